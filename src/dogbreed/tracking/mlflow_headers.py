"""MLflow's request-header plugins kept to the tracking URIs they are made for.

sagemaker-mlflow (in the mlflow extra, for SageMaker's managed MLflow) registers a request-header provider
that says it applies everywhere: before each request to any tracking server it reads MLflow's tracking URI
as a SageMaker ARN, which fails on any other URI (`list index out of range`), and MLflow logs a warning for
each request (dozens in one training run against an `mlflow server`). Here it applies only while the
tracking URI is an ARN, where its headers are needed and an error of it is worth a warning.
"""

from __future__ import annotations

from typing import Any

PLUGIN_PACKAGE = "sagemaker_mlflow"
ARN_PREFIX = "arn:"


def _tracking_uri_is_an_arn() -> bool:
    import mlflow

    return str(mlflow.get_tracking_uri()).startswith(ARN_PREFIX)


def sagemaker_header_providers() -> list[Any]:
    """The request-header providers sagemaker-mlflow registered (none without it, or if MLflow moved its
    registry: then MLflow behaves as it always did)."""
    try:
        from mlflow.tracking.request_header import registry
    except ImportError:
        return []
    providers = getattr(registry, "_request_header_provider_registry", None) or []
    return [p for p in providers if type(p).__module__.split(".")[0] == PLUGIN_PACKAGE]


def quiet_request_header_plugins() -> None:
    """Make sagemaker-mlflow's header provider apply to ARN tracking URIs only (idempotent)."""
    for provider in sagemaker_header_providers():
        provider.in_context = _tracking_uri_is_an_arn
