"""Sessions with the SageMaker SDK (v2): the SDK import, credentials, region, bucket, role and instance
checks, and AWS's refusals turned into one-line errors. Every other module of this package starts here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from dogbreed.config.aws import aws_region
from dogbreed.config.errors import UserError
from dogbreed.sagemaker.dry_run import DRY_RUN_BUCKET, DRY_RUN_ROLE, DryRun

log = logging.getLogger(__name__)

# Error codes that mean the credentials themselves are bad, not the request.
CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "RequestExpired",
    "AuthFailure",
    "IncompleteSignature",
}  # fmt: skip  (one set, read as a list)


class SageMakerSetupError(UserError, RuntimeError):
    """Something to set before a job can start; the message is one line saying what."""


@contextmanager
def aws_errors() -> Iterator[None]:
    """AWS refusing a call (bad or expired credentials, access denied, a ValidationException) or being out
    of reach becomes a SageMakerSetupError: one line with the service's own message, no traceback."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except ClientError as e:
        error = e.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(e))
        if code in CREDENTIAL_ERRORS:
            hint = "; refresh the credentials (aws sso login, aws configure) or set AWS_PROFILE"
        elif code in ("AccessDenied", "AccessDeniedException"):
            hint = "; the identity or backend.role lacks a permission this needs"
        else:
            hint = ""
        raise SageMakerSetupError(f"AWS refused {e.operation_name}: {code}: {message}{hint}") from None
    except NoCredentialsError:
        raise SageMakerSetupError(
            "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from None
    except BotoCoreError as e:
        raise SageMakerSetupError(f"AWS cannot be reached or configured: {e}") from None


def sdk_config() -> dict:
    """The SDK's own configuration (admin and user config files, SAGEMAKER_*_CONFIG_OVERRIDE): its defaults
    (VPC, KMS keys, tags, ...) apply to our jobs as to any; only telemetry is switched off."""
    from sagemaker.config import load_sagemaker_config

    config = load_sagemaker_config() or {}
    config.setdefault("SchemaVersion", "1.0")
    python_sdk = config.setdefault("SageMaker", {}).setdefault("PythonSDK", {})
    python_sdk.setdefault("Modules", {}).setdefault("TelemetryOptOut", True)
    return config


def sdk():
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # The SDK's config logger prints to stdout unless configured; keep stdout for the dry-run JSON.
    config_logger = logging.getLogger("sagemaker.config")
    if config_logger.level == logging.NOTSET:
        config_logger.setLevel(logging.WARNING)
    logging.getLogger("sagemaker.telemetry").setLevel(logging.WARNING)  # opted out; its notice is noise
    try:
        import sagemaker
    except ImportError as e:
        raise SageMakerSetupError(
            "backend=sagemaker needs the SageMaker SDK v2: pip install -e '.[sagemaker]'"
        ) from e
    return sagemaker


def make_session(backend: DictConfig, dry_run: DryRun | None = None, *, bucket_required: bool = True):
    """A sagemaker.Session for `backend`; with `dry_run`, one whose AWS calls are all answered locally.

    `bucket_required=False` is for work that uploads nothing (deleting an endpoint).
    """
    sagemaker = sdk()
    import boto3

    region = backend.get("region") or aws_region()
    if dry_run is not None:
        boto_session = boto3.Session(
            region_name=region or "us-east-1", aws_access_key_id="dry-run", aws_secret_access_key="dry-run"
        )
        boto_session.events.register("before-parameter-build.*.*", dry_run.record)
        boto_session.events.register("before-call.*.*", dry_run.answer)
    else:
        if not region:
            raise SageMakerSetupError("no AWS region: set backend.region=<region> or AWS_REGION")
        boto_session = boto3.Session(region_name=region)
        if boto_session.get_credentials() is None:
            raise SageMakerSetupError(
                "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                " (or run aws configure)"
            )
    bucket = backend.get("bucket") or (DRY_RUN_BUCKET if dry_run is not None else None)
    if dry_run is not None:
        dry_run.bucket = bucket
    if not bucket and bucket_required:
        raise SageMakerSetupError("no S3 bucket: set backend.bucket=<bucket> or SAGEMAKER_BUCKET")
    return sagemaker.Session(boto_session=boto_session, default_bucket=bucket, sagemaker_config=sdk_config())


def check_backend(backend: DictConfig, session: Any, dry_run: bool) -> str:
    """Validate what AWS would reject late; return the role ARN to use."""
    role = resolve_role(backend, dry_run)
    check_instance_type(session, backend.instance_type, "TrainingInstanceType", "backend.instance_type")
    return role


def resolve_role(backend: DictConfig, dry_run: bool) -> str:
    """The execution role ARN; a placeholder in dry runs, so that they need no account."""
    role = backend.get("role")
    if not role:
        if not dry_run:
            raise SageMakerSetupError(
                "no IAM role: set backend.role=arn:aws:iam::<account>:role/<name> or SAGEMAKER_ROLE"
            )
        role = DRY_RUN_ROLE
        log.warning("backend.role is not set: the dry-run request shows %s", role)
    return role


def check_instance_type(
    session: Any, instance_type: str, shape: str, setting: str, example: str = "ml.g4dn.xlarge"
) -> None:
    """Refuse an instance type the API would refuse (`shape`: the botocore enum that lists them)."""
    # botocore's model of the API lists every instance type a training job (or an endpoint) accepts.
    known = session.sagemaker_client.meta.service_model.shape_for(shape).enum
    if instance_type not in known:
        family = instance_type.split(".")[1] if instance_type.count(".") == 2 else ""
        close = sorted(t for t in known if t.split(".")[1] == family)[:6]
        raise SageMakerSetupError(
            f"unknown instance type {setting}={instance_type}"
            + (f" (same family: {', '.join(close)})" if close else f" (expected e.g. {example})")
        )
