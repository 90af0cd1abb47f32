"""What a SageMaker job leaves, brought into the run directory: `attach=<job name>` or `backend.wait=true`.

A training job gives
  model/ (and model.tar.gz)  the exported model, as the job wrote it to SM_MODEL_DIR
  output/                    the job's run directory (output.tar.gz): metrics.json, evaluation/, debug/ and
                             profile/ reports of debugger=on / profiler=on
  rule-output/               SageMaker Debugger/Profiler rule results (the profiler's HTML report among them)
  job.json                   the job's description: status, final metric values, times
A tuning job gives best_overrides.txt and best_params.yaml in the local tuner's layout, its description in
tuning_job.json, and its best training job's files under best/.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.config.overrides import decode_hyperparameter, overrides_from_hyperparameters
from dogbreed.config.secrets import mask_secrets
from dogbreed.files import remove_staging_litter, replace_dir, staging_dir, write_text_atomic
from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)

RUNNING = ("InProgress", "Stopping")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _download_prefix(s3: Any, uri: str, destination: Path) -> list[Path]:
    """Every object under the S3 prefix `uri`, mirrored under `destination` (nothing there: [])."""
    bucket, prefix = _split(uri.rstrip("/") + "/")
    written = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/") or ".." in Path(relative).parts:
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            written.append(target)
    return written


def _download_archive(s3: Any, uri: str, archive: Path, extract_to: Path) -> bool:
    """Download one .tar.gz and put its contents in place of `extract_to`; False when the job left none.

    The archive is extracted into a hidden folder beside `extract_to` and swapped in whole, so a damaged or
    hostile archive (a member outside the folder, a link out, a truncated file) leaves the previous folder
    and archive as they were (or absent): one SageMakerSetupError, nothing half-written."""
    from botocore.exceptions import ClientError

    bucket, key = _split(uri)
    remove_staging_litter(extract_to)
    staged = staging_dir(extract_to)
    download = staged / archive.name  # inside the staging folder: removed with it on failure
    try:
        try:
            s3.download_file(bucket, key, str(download))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                log.info("%s: not found", uri)
                return False
            raise
        _swap_in(download, staged, uri, extract_to)
        os.replace(download, archive)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return True


def _swap_in(archive: Path, staged: Path, uri: str, extract_to: Path) -> None:
    """Extract `archive` into the staging folder `staged` and put the result in place of `extract_to`."""
    contents = staged / extract_to.name
    contents.mkdir()
    _extract(archive, contents, uri, extract_to)
    replace_dir(contents, extract_to)


def _extract_local_archive(archive: Path, extract_to: Path) -> None:
    """A .tar.gz already on this machine (a local-mode job's) swapped in as `_download_archive` does."""
    remove_staging_litter(extract_to)
    staged = staging_dir(extract_to)
    try:
        _swap_in(archive, staged, str(archive), extract_to)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _extract(archive: Path, destination: Path, uri: str, target: Path) -> None:
    """Every member of the .tar.gz `archive` under `destination`; a bad archive is a SageMakerSetupError."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")  # names and links outside are refused
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        kept = f"{target} is left as it was" if target.exists() else f"nothing was written to {target}"
        raise SageMakerSetupError(
            f"{uri} is not a usable archive ({type(e).__name__}: {e}); {kept}."
            " Check the job's output in S3, or attach again once it is replaced"
        ) from None


def _write_json(path: Path, data: dict) -> None:
    """A job's description (its hyperparameters and environment among it), credentials masked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(mask_secrets(data), indent=2, default=str) + "\n")


def attach_training(cfg: DictConfig, session: Any, name: str, out_dir: Path | None = None) -> dict:
    """Follow training job `name` (backend.wait) and download what it left into the run directory."""
    client = session.sagemaker_client
    out = Path(out_dir or cfg.run_dir)
    described = client.describe_training_job(TrainingJobName=name)
    if described["TrainingJobStatus"] in RUNNING and cfg.backend.get("wait"):
        session.logs_for_job(name, wait=True)  # the job's log, streamed until it ends
        described = client.describe_training_job(TrainingJobName=name)
    status = described["TrainingJobStatus"]
    _write_json(out / "job.json", described)
    if status in RUNNING:
        raise SageMakerSetupError(
            f"training job {name} is {status}: attach again when it ends, or add backend.wait=true"
        )
    s3 = session.boto_session.client("s3")
    job_output = f"{described['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}"
    model_uri = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if model_uri and _download_archive(s3, model_uri, out / "model.tar.gz", out / "model"):
        log.info("model: %s", out / "model")
    if _download_archive(s3, f"{job_output}/output/output.tar.gz", out / "output.tar.gz", out / "output"):
        log.info("the job's run directory (metrics, reports): %s", out / "output")
    if _download_prefix(s3, f"{job_output}/rule-output", out / "rule-output"):
        log.info("Debugger/Profiler rule output: %s", out / "rule-output")
    for metric in described.get("FinalMetricDataList") or []:
        print(f"{metric['MetricName']}={float(metric['Value']):.6f}", flush=True)
    if status != "Completed":
        raise SageMakerSetupError(
            f"training job {name} {status}: {described.get('FailureReason', 'no reason given')}"
            f" (what it left is in {out})"
        )
    print(f"training job {name}: results in {out}", flush=True)
    return described


def collect_local_training(cfg: DictConfig, session: Any, name: str, failure: str | None) -> dict:
    """A local-mode job's model.tar.gz and output.tar.gz, which the SDK left in the run directory, extracted
    into model/ and output/ as `attach_training` does; a failed job becomes one line with its reason."""
    out = Path(cfg.run_dir)
    for archive, folder in (("model.tar.gz", "model"), ("output.tar.gz", "output")):
        if (out / archive).is_file():
            _extract_local_archive(out / archive, out / folder)
    if failure is None:
        described = session.sagemaker_client.describe_training_job(TrainingJobName=name)
    else:
        reason_file = out / "output" / "failure"
        reason = reason_file.read_text(errors="replace").strip() if reason_file.is_file() else ""
        described = {
            "TrainingJobName": name,
            "TrainingJobStatus": "Failed",
            "FailureReason": " ".join((reason or failure).split())[-1000:],
        }
    _write_json(out / "job.json", described)
    if failure is not None:
        raise SageMakerSetupError(
            f"local training job {name} Failed: {described['FailureReason']} (its log is above; what it"
            f" left is in {out})"
        )
    log.info("model: %s", out / "model")
    print(f"training job {name} (local mode): results in {out}", flush=True)
    print(f"model_data={described['ModelArtifacts']['S3ModelArtifacts']}", flush=True)
    return described


def best_values(described: dict) -> tuple[str, dict[str, Any], list[str]]:
    """A finished tuning job's best training job, its tuned values, and the static overrides all its
    training jobs shared (the launching tune.py's train overrides)."""
    best = described.get("BestTrainingJob")
    if not best:
        raise SageMakerSetupError(
            f"tuning job {described['HyperParameterTuningJobName']} has no best training job (yet)"
        )
    # A tuned value is a number (continuous and integer ranges) or a JSON-encoded string (categorical).
    tuned = {key: decode_hyperparameter(v) for key, v in sorted(best["TunedHyperParameters"].items())}
    statics = (described.get("TrainingJobDefinition") or {}).get("StaticHyperParameters") or {}
    static = overrides_from_hyperparameters({k: decode_hyperparameter(v) for k, v in statics.items()})
    return best["TrainingJobName"], tuned, static


def attach_tuning(cfg: DictConfig, session: Any, name: str) -> dict:
    """Follow tuning job `name` (backend.wait); write its best values as the local tuner does, and download
    the best training job's model and reports into <run_dir>/best/."""
    from dogbreed.tuning.report import train_overrides, write_best_files

    client = session.sagemaker_client
    out = Path(cfg.run_dir)
    described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    if described["HyperParameterTuningJobStatus"] in RUNNING and cfg.backend.get("wait"):
        session.wait_for_tuning_job(name)
        described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    _write_json(out / "tuning_job.json", described)
    job, tuned, static = best_values(described)
    best = described["BestTrainingJob"]
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    overrides = train_overrides(static, tuned)
    path = write_best_files(
        out,
        study_name=name,
        direction=str(objective.get("Type", "")).lower(),
        trial=job,
        value=objective.get("Value"),
        params=tuned,
        user_attrs={"objective": objective.get("MetricName"), "training_job": job},
        overrides=overrides,
    )
    print(f"best training job {job}: {' '.join(mask_secrets(overrides))}", flush=True)
    print(f"train with the best values: python train.py $(cat {path})", flush=True)
    attach_training(cfg, session, job, out / "best")
    return described
