"""Dry runs: the SageMaker SDK builds every request as usual, and botocore events answer them locally.

`before-parameter-build` records each call's parameters and `before-call` returns a canned response, so
nothing is sent, nothing is uploaded and no credentials are needed (the mechanism botocore's Stubber uses).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.config.secrets import mask_secrets

log = logging.getLogger(__name__)

DRY_RUN_ACCOUNT = "123456789012"
DRY_RUN_ROLE = f"arn:aws:iam::{DRY_RUN_ACCOUNT}:role/set-backend.role"
DRY_RUN_BUCKET = "set-backend-bucket"


@dataclass
class DryRun:
    """Answers every AWS call the SDK makes, records it, sends nothing (botocore before-call events)."""

    bucket: str = DRY_RUN_BUCKET
    calls: list[tuple[str, dict]] = field(default_factory=list)
    # Answers for this run on top of CANNED, e.g. what a Describe call would find (teardown dry runs).
    answers: dict[str, dict] = field(default_factory=dict)

    CANNED = {
        "GetCallerIdentity": {"Account": DRY_RUN_ACCOUNT, "Arn": DRY_RUN_ROLE, "UserId": "dry-run"},
        "CreateTrainingJob": {
            "TrainingJobArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:training-job/x"
        },
        "CreateHyperParameterTuningJob": {
            "HyperParameterTuningJobArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:tuning-job/x"
        },
        "ListObjectsV2": {"KeyCount": 0, "Contents": []},
        "CreateModel": {"ModelArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:model/x"},
        "CreateEndpointConfig": {
            "EndpointConfigArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:endpoint-config/x"
        },
        "CreateEndpoint": {"EndpointArn": f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:endpoint/x"},
        "PutScalingPolicy": {"PolicyARN": "dry-run", "Alarms": []},
    }

    def record(self, params: dict, model: Any, **_: Any) -> None:
        self.calls.append((model.name, params))

    def answer(self, model: Any, **_: Any) -> tuple[Any, dict]:
        from botocore.awsrequest import AWSResponse

        canned = self.answers.get(model.name, self.CANNED.get(model.name, {}))
        parsed = {**canned, "ResponseMetadata": {"HTTPStatusCode": 200}}
        if model.name == "ListBuckets":  # the SDK checks that its bucket exists
            parsed["Buckets"] = [{"Name": self.bucket, "CreationDate": datetime.datetime(2026, 1, 1)}]
        return AWSResponse(None, 200, {}, None), parsed

    def request(self, operation: str) -> dict:
        found = [params for name, params in self.calls if name == operation]
        if not found:
            raise RuntimeError(f"the SDK made no {operation} call")
        return found[-1]

    def changes(self) -> list[dict]:
        """The calls that would change something (Create*, Delete*, Put*, ...), in order; reads left out."""
        reads = ("Describe", "List", "Get", "Head")
        return [
            {"operation": name, "request": params}
            for name, params in self.calls
            if not name.startswith(reads)
        ]


class _NothingSent(logging.Filter):
    """The SDK logs "Creating training-job with name: ..." (and "Deleting ...") as it builds each request: in
    a dry run nothing is created or deleted, so the line says so instead."""

    WORDS = {"Creating ": "would create ", "Deleting ": "would delete "}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for word, instead in self.WORDS.items():
            if message.startswith(word):
                record.msg, record.args = f"dry run, not sent: {instead}{message[len(word) :]}", ()
        return True


@contextmanager
def sdk_log_of(dry_run: DryRun | None) -> Iterator[None]:
    """Around the SDK calls of a dry run (`dry_run` not None): its "Creating/Deleting ..." lines reworded."""
    if dry_run is None:
        yield
        return
    sdk_logger, reword = logging.getLogger("sagemaker"), _NothingSent()
    sdk_logger.addFilter(reword)
    try:
        yield
    finally:
        sdk_logger.removeFilter(reword)


def show_request(run_dir: str | Path, request: Any, file_name: str) -> Any:
    """Print the request JSON and keep it in the run directory (stdout also carries Hydra's log lines), with
    credentials masked: the request itself carries the hyperparameters and environment as given."""
    text = json.dumps(mask_secrets(request), indent=2, default=str)
    print(text, flush=True)
    path = Path(run_dir) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    log.info("dry run: nothing was sent; the request is in %s", path)
    return request
