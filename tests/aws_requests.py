"""Requests checked against botocore's own model of the AWS APIs: what AWS would refuse as malformed."""

from __future__ import annotations

import botocore.session
from botocore.validate import ParamValidator

SERVICES = ("sagemaker", "application-autoscaling", "s3")


def request_problems(requests: list[dict]) -> list[str]:
    """For dry-run requests ({"operation", "request"}), botocore's validation report of each malformed one:
    missing required members, unknown members, wrong types, values under a minimum or over a length."""
    session = botocore.session.get_session()
    models = [session.get_service_model(name) for name in SERVICES]
    problems = []
    for entry in requests:
        operation = entry["operation"]
        model = next((m for m in models if operation in m.operation_names), None)
        if model is None:
            problems.append(f"{operation}: no such operation in {', '.join(SERVICES)}")
            continue
        shape = model.operation_model(operation).input_shape
        report = ParamValidator().validate(entry["request"], shape)
        if report.has_errors():
            problems.append(f"{operation}: {report.generate_report()}")
    return problems
