"""What a training run records in MLflow beyond Lightning's MLFlowLogger (which logs the metrics): the
config as flattened params, provenance tags, and at the end the evaluation files and the manifest as
artifacts and the exported model as an MLflow model (dogbreed.tracking.mlflow_model)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from dogbreed.config.errors import MissingExtraError
from dogbreed.config.schema import MLFLOW_MODEL_KEYS, MlflowModelValues
from dogbreed.config.secrets import mask_secrets
from dogbreed.tracking.mlflow_headers import quiet_request_header_plugins
from dogbreed.tracking.run_record import RECORD_FILES
from dogbreed.tracking.sagemaker_job import (
    MLFLOW_LOGGER,
    TENSORBOARD_LOGGER,
    logger_targets,
    mlflow_job_tags,
)

log = logging.getLogger(__name__)

PRINT_URL_OFF = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"

EXTRA_HINT = "pip install -e '.[mlflow]' (or pip install mlflow-skinny sqlalchemy alembic sagemaker-mlflow)"

DIAGNOSTICS_FILES = (
    "diagnostics_report.html",
    "rule_summary.json",
    "debug/rule_outcomes.json",
    "profile/rule_outcomes.json",
    "profile/summary.json",
)


# A logger's target -> (the modules any one of which it runs with, the error when none imports). Lightning's
# own error for a missing TensorBoard is a ModuleNotFoundError that names no module, so it is checked here.
LOGGER_EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    MLFLOW_LOGGER: (("mlflow",), f"logger=mlflow needs MLflow: {EXTRA_HINT}"),
    TENSORBOARD_LOGGER: (
        ("tensorboard", "tensorboardX"),
        "logger=tensorboard needs TensorBoard: pip install -e '.[tensorboard]' (or pip install tensorboard)",
    ),
}


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_logger_extras(logger_cfg: Mapping[str, Any] | None) -> None:
    """Fail before training when a logger is asked for whose optional package is missing."""
    for target in sorted(logger_targets(logger_cfg)):
        modules, message = LOGGER_EXTRAS.get(target, ((), ""))
        if modules and not any(_imports(module) for module in modules):
            raise MissingExtraError(message)


def mlflow_loggers(loggers: Iterable[Logger]) -> list[MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def instantiate_logger(node: DictConfig, **kwargs: Any) -> Any:
    """The logger a `logger.<name>` node describes, built without the keys this project reads itself
    (logger.mlflow.log_exported_model and registered_model_name: MLFlowLogger takes neither)."""
    if any(key in node for key in MLFLOW_MODEL_KEYS):
        node = OmegaConf.masked_copy(node, [str(k) for k in node if str(k) not in MLFLOW_MODEL_KEYS])
    return instantiate(node, **kwargs)


def mlflow_model_values(logger_cfg: Mapping[str, Any] | None) -> MlflowModelValues:
    """What the first MLflow logger says about logging and registering the exported model."""
    for node in (logger_cfg or {}).values():
        if node and node.get("_target_") == MLFLOW_LOGGER:
            return MlflowModelValues(**{k: node[k] for k in MLFLOW_MODEL_KEYS if k in node})
    return MlflowModelValues()


def run_tags(manifest: Mapping[str, Any], run_dir: str | Path) -> dict[str, str]:
    git = manifest.get("git") or {}
    tags = {
        "dogbreed.run_dir": str(Path(run_dir).resolve()),
        "dogbreed.data_sha256": str((manifest.get("data") or {}).get("sha256")),
        # MLflow's own tag for the code version: its UI shows it in the run's source column.
        "mlflow.source.git.commit": str(git.get("commit") or "none: not a git checkout"),
        "dogbreed.git_dirty": str(bool(git.get("dirty"))).lower(),
    }
    if git.get("diff_sha256"):
        tags["dogbreed.git_diff_sha256"] = str(git["diff_sha256"])
    return {**tags, **mlflow_job_tags()}


def start_mlflow_runs(
    loggers: Iterable[Logger], config: Mapping[str, Any], manifest: Mapping[str, Any], run_dir: str | Path
) -> None:
    """Log the config as records hold it (`config_for_records`), flattened (model/lr, data/batch_size, ...),
    and provenance tags, both masked."""
    loggers = mlflow_loggers(loggers)
    if not loggers:
        return  # nothing to do, and MLflow may not be installed
    from mlflow.entities import RunTag

    quiet_request_header_plugins()
    # MLflow prints the run's address each time Lightning ends the run (after fit, again after test):
    # finish_mlflow_runs logs it once instead.
    os.environ.setdefault(PRINT_URL_OFF, "true")
    for logger in loggers:
        logger.log_hyperparams(mask_secrets(dict(config)))
        tags = [RunTag(key, value) for key, value in mask_secrets(run_tags(manifest, run_dir)).items()]
        logger.experiment.log_batch(logger.run_id, tags=tags)


def finish_mlflow_runs(
    loggers: Iterable[Logger],
    run_dir: str | Path,
    model_dir: str | Path | None,
    summary: Mapping[str, Any],
    model_values: MlflowModelValues | None = None,
) -> None:
    """Log the run's outputs as artifacts and the summary figures that are not already metrics, and the
    exported model as an MLflow model (registered when `model_values` names it)."""
    model_values = model_values or MlflowModelValues()
    run_dir = Path(run_dir)
    for logger in mlflow_loggers(loggers):
        client, run_id = logger.experiment, logger.run_id
        if "mean_class_accuracy" in summary:
            client.log_metric(run_id, "test/mean_class_accuracy", float(summary["mean_class_accuracy"]))
        for name in (*RECORD_FILES, "skipped_images.txt"):
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))
        if (run_dir / "evaluation").is_dir():
            client.log_artifacts(run_id, str(run_dir / "evaluation"), "evaluation")
        # The rule reports of debugger=on / profiler=on (the HTML report embeds their plots).
        for name in DIAGNOSTICS_FILES:
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name), str(Path("diagnostics", name).parent))
        if model_dir and Path(model_dir).is_dir() and model_values.log_exported_model:
            log_model(client.tracking_uri, str(run_id), model_dir, model_values.registered_model_name)
        if client.tracking_uri.startswith(("http://", "https://")):
            experiment = client.get_run(str(run_id)).info.experiment_id
            server = mask_secrets(client.tracking_uri.rstrip("/"))
            log.info("MLflow run: %s/#/experiments/%s/runs/%s", server, experiment, run_id)


def log_model(
    tracking_uri: str, run_id: str, model_dir: str | Path, registered_model_name: str | None
) -> Any:
    """The model folder as an MLflow model of run `run_id` (its artifacts: the folder as SageMaker serves
    it), registered when a name is given; one log line says where it went."""
    from dogbreed.tracking.mlflow_model import log_mlflow_model

    info = log_mlflow_model(tracking_uri, run_id, model_dir, registered_model_name)
    version = getattr(info, "registered_model_version", None)
    registered = f", registered as {registered_model_name} version {version}" if version else ""
    log.info("logged %s to MLflow as %s%s", model_dir, info.model_uri, registered)
    return info
