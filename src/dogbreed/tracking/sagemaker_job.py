"""SageMaker pieces of tracking, free of the SDK: what the launcher adds to a training job (tags with the
commit, TensorBoard output, environment, requirements) and what a running job tells about itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.config.extras import EXTRAS
from dogbreed.config.job_environment import JobEnvironment
from dogbreed.tracking.git_state import git_state, launcher_environment

# Where SageMaker uploads TensorBoard files from (TensorBoardOutputConfig's default local path).
TENSORBOARD_CONTAINER_DIR = "/opt/ml/output/tensorboard"
# conf/logger/tensorboard.yaml writes under this directory when the variable is set.
TENSORBOARD_DIR_VAR = "DOGBREED_TENSORBOARD_DIR"
TENSORBOARD_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"
MLFLOW_LOGGER = "lightning.pytorch.loggers.MLFlowLogger"
# The mlflow extra (dogbreed.config.extras): a job that logs to MLflow installs it.
MLFLOW_REQUIREMENTS = EXTRAS["mlflow"]
TAG_PREFIX = "dogbreed:"
REMOTE_TRACKING_SCHEMES = ("arn", "http", "https", "databricks")


def logger_targets(logger_cfg: Mapping[str, Any] | None) -> set[str]:
    return {str(lg.get("_target_")) for lg in (logger_cfg or {}).values() if lg}


def job_tags(git: Mapping[str, Any]) -> dict[str, str]:
    """Tags for the training or tuning job naming the commit it was launched from ({} outside git)."""
    if not git.get("commit"):
        return {}
    tags = {
        f"{TAG_PREFIX}git-commit": str(git["commit"]),
        f"{TAG_PREFIX}git-dirty": str(bool(git.get("dirty"))).lower(),
    }
    if git.get("diff_sha256"):
        tags[f"{TAG_PREFIX}git-diff-sha256"] = str(git["diff_sha256"])
    return tags


def job_environment(
    git: Mapping[str, Any], logger_cfg: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Environment for the job: the git state (its code copy has no .git), the TensorBoard folder, and the
    launcher's MLFLOW_TRACKING_URI when it names a server the job can reach too."""
    env = launcher_environment(git)
    targets = logger_targets(logger_cfg)
    if TENSORBOARD_LOGGER in targets:
        env[TENSORBOARD_DIR_VAR] = TENSORBOARD_CONTAINER_DIR
    uri = environ.get("MLFLOW_TRACKING_URI", "")
    # A local store (a path, a SQLite file) means nothing inside the container: only servers are passed on.
    if MLFLOW_LOGGER in targets and uri.split(":", 1)[0] in REMOTE_TRACKING_SCHEMES:
        env["MLFLOW_TRACKING_URI"] = uri
    return env


def tensorboard_output(logger_cfg: Mapping[str, Any] | None, s3_output_path: str) -> dict[str, str] | None:
    """TensorBoardOutputConfig's arguments when the run logs to TensorBoard, else None.

    `s3_output_path`: where SageMaker copies the files, e.g. s3://<bucket>/<prefix>/tensorboard; Studio's
    TensorBoard reads them from there.
    """
    if TENSORBOARD_LOGGER not in logger_targets(logger_cfg):
        return None
    return {"s3_output_path": s3_output_path, "container_local_output_path": TENSORBOARD_CONTAINER_DIR}


def job_requirements(logger_cfg: Mapping[str, Any] | None) -> list[str]:
    """Extra requirements the job's container installs for the configured loggers."""
    targets = logger_targets(logger_cfg)
    extra: list[str] = []
    if MLFLOW_LOGGER in targets:
        extra += MLFLOW_REQUIREMENTS
    if TENSORBOARD_LOGGER in targets:
        extra.append("tensorboard>=2.14")
    return extra


@dataclass(frozen=True)
class JobTracking:
    """Everything a launched training job needs for tracking, in the shapes the SDK's estimator takes."""

    tags: dict[str, str]  # merge into the job's tags
    environment: dict[str, str]  # merge into the estimator's environment
    tensorboard_output: dict[str, str] | None  # TensorBoardOutputConfig(**this), or no TensorBoard output
    requirements: list[str]  # append to the staged requirements.txt


def job_tracking(
    logger_cfg: Mapping[str, Any] | None,
    tensorboard_s3_uri: str,
    code_dir: str | Path,
    environ: Mapping[str, str] = os.environ,
) -> JobTracking:
    """What the launcher adds to a job running the code of `code_dir` (a git checkout) with these loggers."""
    git = git_state(code_dir, environ={})  # the launcher's own checkout, never an inherited variable
    return JobTracking(
        tags=job_tags(git),
        environment=job_environment(git, logger_cfg, environ),
        tensorboard_output=tensorboard_output(logger_cfg, tensorboard_s3_uri),
        requirements=job_requirements(logger_cfg),
    )


def running_job(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The SageMaker training job this process runs in ({} outside one): name and ARN."""
    job = JobEnvironment.from_environ(environ)
    found = {"name": job.job_name, "arn": job.job_arn}
    return {key: value for key, value in found.items() if value}


def mlflow_job_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """MLflow run tags naming the SageMaker job the run is part of ({} outside a job)."""
    job = running_job(environ)
    return {f"sagemaker.training_job_{key}": value for key, value in job.items()}
