"""The SageMaker training job this process runs in, read from its environment once.

The sagemaker-training toolkit describes the job in environment variables (SM_HPS, SM_CHANNEL_*, SM_MODEL_DIR,
SM_HOSTS, ...; TRAINING_JOB_NAME from SageMaker itself). `JobEnvironment.from_environ` parses them into one
object, as the toolkit's own `Environment` does, and the callers take that object: the container's placement
of a run (sagemaker/container), the record of which job a run belongs to (tracking). It lives in the lowest
layer so that every layer can take it, and it imports nothing of the SageMaker SDK.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHANNEL_PREFIX = "SM_CHANNEL_"


def in_sagemaker_job(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs inside a SageMaker training job (the toolkit sets either variable)."""
    return "SM_TRAINING_ENV" in environ or "SM_MODEL_DIR" in environ


def _json(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        return default


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _job_name(environ: Mapping[str, str]) -> str | None:
    """SageMaker sets TRAINING_JOB_NAME; the toolkit's SM_TRAINING_ENV carries it too."""
    if environ.get("TRAINING_JOB_NAME"):
        return environ["TRAINING_JOB_NAME"]
    training_env = _json(environ.get("SM_TRAINING_ENV"), {})
    name = training_env.get("job_name") if isinstance(training_env, dict) else None
    return str(name) if name else None


def _tuning_objective(base_dir: Path) -> str | None:
    """The `_tuning_objective_metric` the tuning service gave this training job, else None."""
    try:
        text = (base_dir / "input" / "config" / "hyperparameters.json").read_text()
    except OSError:
        return None
    hyperparameters = _json(text, {})
    value = hyperparameters.get("_tuning_objective_metric") if isinstance(hyperparameters, dict) else None
    return str(_json(value, value)) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class JobEnvironment:
    """What the job's environment says: where its folders are, its hyperparameters, channels and hosts."""

    inside_job: bool = False
    base_dir: Path = Path("/opt/ml")  # SAGEMAKER_BASE_DIR moves it (the toolkit's own switch)
    job_name: str | None = None
    job_arn: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # SM_HPS
    channels: dict[str, Path] = field(default_factory=dict)  # SM_CHANNEL_<NAME>, name in lower case
    model_dir: Path | None = None  # SM_MODEL_DIR
    output_data_dir: Path | None = None  # SM_OUTPUT_DATA_DIR
    hosts: tuple[str, ...] = ()  # SM_HOSTS, sorted as SageMaker sorts them
    current_host: str | None = None  # SM_CURRENT_HOST
    network_interface: str | None = None  # SM_NETWORK_INTERFACE_NAME
    local_rank: str = "0"  # LOCAL_RANK: Lightning relaunches train.py once per extra device
    launcher: dict[str, str] = field(default_factory=dict)  # MASTER_ADDR/PORT, GLOO_SOCKET_IFNAME when set
    # One training job of a tuning job: the service adds this hyperparameter, which the toolkit keeps out
    # of SM_HPS, so it is read from the job's own input/config/hyperparameters.json.
    tuning_objective: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> JobEnvironment:
        channels = {
            key[len(CHANNEL_PREFIX) :].lower(): Path(value)
            for key, value in environ.items()
            if key.startswith(CHANNEL_PREFIX)
        }
        hosts = _json(environ.get("SM_HOSTS"), [])
        base_dir = Path(environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
        launcher_keys = ("MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME")
        return cls(
            inside_job=in_sagemaker_job(environ),
            base_dir=base_dir,
            job_name=_job_name(environ),
            job_arn=environ.get("TRAINING_JOB_ARN") or None,
            hyperparameters=_json(environ.get("SM_HPS"), {}),
            channels=channels,
            model_dir=Path(environ["SM_MODEL_DIR"]) if environ.get("SM_MODEL_DIR") else None,
            output_data_dir=Path(environ["SM_OUTPUT_DATA_DIR"])
            if environ.get("SM_OUTPUT_DATA_DIR")
            else None,
            hosts=tuple(sorted(hosts)) if isinstance(hosts, list) else (),
            current_host=environ.get("SM_CURRENT_HOST") or None,
            network_interface=environ.get("SM_NETWORK_INTERFACE_NAME") or None,
            local_rank=environ.get("LOCAL_RANK", "0"),
            launcher={key: environ[key] for key in launcher_keys if environ.get(key)},
            tuning_objective=_tuning_objective(base_dir) if in_sagemaker_job(environ) else None,
        )
