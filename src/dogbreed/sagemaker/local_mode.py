"""SageMaker's local mode: `backend.instance_type=local` (or `local_gpu`) runs the training job, and
`endpoint.instance_type=local` the endpoint, in a container on this machine through the SDK itself.

The SDK writes SageMaker's files (/opt/ml/input/config/*.json, the channels, the model) as the service would
and starts the image with Docker Compose (`docker compose` v2, else the `docker-compose` command). Nothing
goes to AWS: the code and data are mounted from local folders, the model comes back as file:// archives,
and no credentials are needed (placeholders stand in when none are configured; real ones, when present, are
passed to the container by the SDK and let s3:// channels work).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.sagemaker.session import SageMakerSetupError, sdk, sdk_config

log = logging.getLogger(__name__)

LOCAL_INSTANCE_TYPES = ("local", "local_gpu")
# Local mode never sends the role anywhere; the SDK still wants an ARN (a bare name is looked up in IAM).
LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode"
# Placeholder credentials when none are configured: the SDK asks for some, and nothing is ever signed.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local-mode", "aws_secret_access_key": "local-mode"}
# Every container of a local job or endpoint carries this label (value: the job or endpoint name), so
# that they can be removed when it ends: Docker Compose leaves stopped containers behind.
CONTAINER_LABEL = "dogbreed.sagemaker-local"
ECR_HOST = ".dkr.ecr."


def is_local(instance_type: Any) -> bool:
    return str(instance_type) in LOCAL_INSTANCE_TYPES


def check_image(image: Any, setting: str) -> str:
    """The image a local job or endpoint runs: set, and on this machine (or in ECR, pulled by the SDK)."""
    if not image:
        raise SageMakerSetupError(
            f"local mode runs an image of your own: set {setting}=<image> (build it with"
            " docker build -f docker/Dockerfile -t dogbreed .)"
        )
    check_docker()
    image = str(image)
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    if found.returncode != 0 and ECR_HOST not in image:  # the SDK logs in to ECR and pulls those itself
        raise SageMakerSetupError(
            f"{setting}={image}: no such image on this machine (docker images lists them): build it"
            " (docker build -f docker/Dockerfile -t <image> .) or docker pull it"
        )
    return image


def check_docker() -> None:
    """Docker and Docker Compose, as the SDK will call them."""
    if shutil.which("docker") is None:
        raise SageMakerSetupError("local mode needs Docker: install it (docker.io) and start dockerd")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if info.returncode != 0:
        reason = " ".join((info.stderr or info.stdout).split())[:300]
        raise SageMakerSetupError(f"local mode needs a running Docker engine: docker info says: {reason}")
    compose_v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if "v2" not in compose_v2.stdout and shutil.which("docker-compose") is None:
        raise SageMakerSetupError(
            "local mode needs Docker Compose: install the docker compose plugin or docker-compose"
            " (apt-get install docker-compose)"
        )


def local_session(backend: DictConfig, label: str, serving_port: int | None = None) -> Any:
    """A sagemaker.LocalSession: local code (no upload), containers labelled `label`, the endpoint (if any)
    published on `serving_port` of this machine."""
    sdk()
    import boto3
    from sagemaker.local import LocalSession

    region = backend.get("region") or boto3.Session().region_name or "us-east-1"
    boto_session = boto3.Session(region_name=region)
    if boto_session.get_credentials() is None:
        boto_session = boto3.Session(region_name=region, **LOCAL_CREDENTIALS)
    session = LocalSession(boto_session=boto_session, sagemaker_config=sdk_config())
    local: dict[str, Any] = {
        "local_code": True,
        "container_config": {"labels": {CONTAINER_LABEL: label}},
    }
    if serving_port is not None:
        local["serving_port"] = int(serving_port)
    session.config = {"local": local}
    return session


def remove_containers(label: str) -> list[str]:
    """Remove the containers of one local job or endpoint (running or stopped); their ids."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={CONTAINER_LABEL}={label}"],
        capture_output=True,
        text=True,
    )
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, text=True)
    return ids


def stop_containers(label: str, timeout_s: int = 10) -> None:
    """SIGTERM to the containers of one local job or endpoint, SIGKILL after `timeout_s` (docker stop)."""
    ids = running_containers(label)
    if ids:
        subprocess.run(["docker", "stop", "-t", str(timeout_s), *ids], capture_output=True, text=True)


def running_containers(label: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label={CONTAINER_LABEL}={label}"],
        capture_output=True,
        text=True,
    )
    return listed.stdout.split()


def file_uri(path: Path | str) -> str:
    return "file://" + str(Path(path).expanduser().resolve())


def local_channels(cfg: DictConfig) -> dict[str, str] | None:
    """A local job's channels: backend.inputs as given (file:// or s3://), else data.root mounted as the
    one channel `data`; None for synthetic data (generated in the container)."""
    from dogbreed.data.layout import DataLayoutError, inspect_layout

    inputs = cfg.backend.get("inputs")
    if inputs:
        channels = {"data": inputs} if isinstance(inputs, str) else {str(k): v for k, v in inputs.items()}
        bad = {k: v for k, v in channels.items() if not str(v).startswith(("file://", "s3://"))}
        if bad:
            raise SageMakerSetupError(
                f"backend.inputs must be file:// or s3:// URIs in local mode, got {bad}"
            )
        return {k: str(v) for k, v in channels.items()}
    if cfg.data.get("synthetic"):
        return None
    root = Path(cfg.data.root).expanduser()
    try:
        inspect_layout(root)
    except DataLayoutError as e:
        raise SageMakerSetupError(f"data.root={root}: {e}") from None
    return {"data": file_uri(root)}


def check_local_job(backend: DictConfig, kind: str = "training") -> None:
    """What local mode cannot do, refused before anything starts."""
    if kind == "tuning":
        raise SageMakerSetupError(
            f"backend.instance_type={backend.instance_type}: SageMaker's local mode runs training jobs and"
            " endpoints, not tuning jobs; tune here with backend=local, or use an ml.* instance type"
        )
    refused = {
        "backend.spot": "spot training needs SageMaker's capacity",
        "backend.checkpoint_s3_uri": "checkpoints are not synced to S3 in local mode",
        "backend.debugger.enabled": "SageMaker Debugger's rules run in the service (debugger=on runs ours)",
        "backend.profiler.enabled": "the profiler's rules run in the service (profiler=on runs ours)",
        "backend.dry_run": "a local job sends no request to print",
    }
    values = {
        "backend.spot": backend.get("spot"),
        "backend.checkpoint_s3_uri": backend.get("checkpoint_s3_uri"),
        "backend.debugger.enabled": (backend.get("debugger") or {}).get("enabled"),
        "backend.profiler.enabled": (backend.get("profiler") or {}).get("enabled"),
        "backend.dry_run": backend.get("dry_run"),
    }
    for key, why in refused.items():
        if values[key]:
            raise SageMakerSetupError(
                f"{key}={values[key]} does not work with backend.instance_type="
                f"{backend.instance_type} ({why}): drop it, or use an ml.* instance type"
            )
