"""SageMaker batch transform of an S3 folder of images to an S3 folder of JSON answers (SDK v2 Transformer).

`run_batch_transform(cfg)` packs and uploads the model as an endpoint's (endpoint_model.py), creates the same
SageMaker model (`breed_model`: the PyTorch inference container running serve/inference.py with the
handler's DOGBREED_* environment) and starts a transform job over `transform.input`. SageMaker sends each
object under that prefix as one POST /invocations (SplitType None: the whole file is the record, with the
job's ContentType), and writes each answer to `transform.output` as `<key>.out`. With backend.dry_run the
requests are printed and kept in the run directory, and nothing is sent.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from dogbreed.config.schema import check_deploy_config
from dogbreed.sagemaker.dry_run import DryRun, sdk_log_of, show_request
from dogbreed.sagemaker.endpoint import (
    ENDPOINT_NAME,
    breed_model,
    check_name_free,
    image_uri,
    resource_tags,
)
from dogbreed.sagemaker.endpoint_model import model_source, stage_model
from dogbreed.sagemaker.session import (
    SageMakerSetupError,
    check_instance_type,
    make_session,
    resolve_role,
)

log = logging.getLogger(__name__)

# One file is one request (SplitType None), and each request carries one record.
BATCH_STRATEGY = "SingleRecord"


class TransformJobError(SageMakerSetupError):
    """The transform job failed or was stopped; the message says why and where its answers are."""


def _job_name(cfg: DictConfig) -> str:
    from sagemaker.utils import name_from_base

    name = cfg.transform.get("job_name") or name_from_base(str(cfg.endpoint.base_name))
    if not ENDPOINT_NAME.match(name):
        raise SageMakerSetupError(
            f"transform.job_name={name} is not valid: at most 63 letters, digits and hyphens, no hyphen first"
        )
    return name


def run_batch_transform(cfg: DictConfig) -> dict | list[dict]:
    """Create (or print, with backend.dry_run) the model and the transform job; wait for it with
    transform.wait. Returns DescribeTransformJob's answer, or with a dry run the list of requests."""
    check_deploy_config(cfg)
    transform = cfg.transform
    source = model_source(cfg)
    dry_run = DryRun() if cfg.backend.dry_run else None
    session = make_session(cfg.backend, dry_run)
    role = resolve_role(cfg.backend, dry_run is not None)
    instance_type = str(transform.instance_type)
    check_instance_type(
        session, instance_type, "TransformInstanceType", "transform.instance_type", "ml.m5.large"
    )
    image = image_uri(cfg.endpoint, session, instance_type)
    name = _job_name(cfg)
    if dry_run is None:
        fix = "choose another transform.job_name, or delete the model with aws sagemaker delete-model"
        check_name_free(session, name, ("model", "transform job"), fix)
    model_data = stage_model(cfg, session, name, source, dry_run is not None)
    with sdk_log_of(dry_run):  # a dry run's SDK lines say nothing was sent
        _start(cfg, breed_model(cfg, session, role, image, model_data, name), name, dry_run is not None)
    if dry_run is not None:
        return show_request(cfg.run_dir, dry_run.changes(), "transform_requests.json")
    client = session.sagemaker_client
    if transform.wait:
        wait_until_done(client, name)
    described = client.describe_transform_job(TransformJobName=name)
    print(summary(described), flush=True)
    return described


def _start(cfg: DictConfig, model: Any, name: str, dry_run: bool) -> None:
    """CreateModel and CreateTransformJob, both named `name`, through the SDK's Transformer."""
    transform = cfg.transform
    max_payload_mb = int(transform.max_payload_mb)
    transformer = model.transformer(
        instance_count=int(transform.instance_count),
        instance_type=str(transform.instance_type),
        strategy=BATCH_STRATEGY,
        # No joining: each input object gets its own <key>.out.
        assemble_with="None",
        output_path=str(transform.output),
        accept=str(transform.accept),
        max_concurrent_transforms=transform.max_concurrent_transforms,
        max_payload=max_payload_mb,
        # The handler's body limit follows the job's payload limit: an image SageMaker sends is never refused
        # for its size alone.
        env={"DOGBREED_MAX_BODY_BYTES": str(max_payload_mb * 2**20)},
        tags=resource_tags(cfg),
    )
    log.info(
        "%s transform job %s: %s -> %s (%s x %s)",
        "dry run, not sent: would start" if dry_run else "starting",
        name,
        transform.input,
        transform.output,
        transform.instance_count,
        transform.instance_type,
    )
    transformer.transform(
        data=str(transform.input),
        data_type="S3Prefix",
        content_type=str(transform.content_type),
        split_type=None,  # the whole object is one record: one image per request
        job_name=name,
        wait=False,  # wait_until_done waits, with botocore's waiter
        logs=False,
    )


def wait_until_done(client: Any, name: str) -> None:
    """Block until the job ends; a failed or stopped job becomes a one-line error with its reason."""
    from botocore.exceptions import WaiterError

    log.info("waiting for transform job %s (instances start in about 5 minutes)", name)
    waiter = client.get_waiter("transform_job_completed_or_stopped")
    while True:
        try:
            waiter.wait(TransformJobName=name)
        except WaiterError:
            pass  # a failure, or the waiter's hour is up on a long job: the job's own status says which
        described = client.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
    if described["TransformJobStatus"] != "Completed":
        reason = described.get("FailureReason") or "no reason given"
        raise TransformJobError(
            f"transform job {name} ended {described['TransformJobStatus']}: {' '.join(reason.split())}"
            f" (answers written so far are in {described['TransformOutput']['S3OutputPath']}; the job's log"
            " is in CloudWatch, log group /aws/sagemaker/TransformJobs)"
        )


def summary(described: dict) -> str:
    """Where the answers are, and how to read one."""
    name = described["TransformJobName"]
    source = described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    output = described["TransformOutput"]["S3OutputPath"]
    return "\n".join(
        [
            f"transform job {name}: {described['TransformJobStatus']}",
            f"each image under {source} has its JSON answer under {output} as <key>.out:",
            f"  aws s3 ls {output.rstrip('/')}/",
            f"  aws s3 cp {output.rstrip('/')}/<key>.out -",
        ]
    )
