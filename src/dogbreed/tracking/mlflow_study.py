"""A tuning study as one MLflow parent run, its trials as nested runs (MLflow's mlflow.parentRunId tag).

A resumed study (same study name and storage) finds its parent run again and adds the new trials to it.
Trials log no model while they run: when the study ends, the models it keeps (tune.keep_models) are logged
to their trials' runs, and the best one is registered when logger.mlflow.registered_model_name says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.config.secrets import config_for_records, mask_secrets
from dogbreed.tracking.mlflow_headers import quiet_request_header_plugins
from dogbreed.tracking.mlflow_run import (
    check_logger_extras,
    instantiate_logger,
    log_model,
    mlflow_model_values,
)
from dogbreed.tracking.sagemaker_job import MLFLOW_LOGGER

PARENT_TAG = "mlflow.parentRunId"  # what mlflow.start_run(nested=True) sets; the UI nests runs by it
STUDY_TAG = "dogbreed.study"
TRIAL_TAG = "optuna.trial"
MODEL_TAG = "dogbreed.logged_model"  # a kept trial's MLflow model, once the study has logged it


def mlflow_logger_keys(cfg: DictConfig) -> list[str]:
    return [
        key
        for key, node in (cfg.get("logger") or {}).items()
        if node and node.get("_target_") == MLFLOW_LOGGER
    ]


def study_key(study_name: str, storage: str) -> str:
    return f"{study_name} @ {storage}"


@contextmanager
def study_parent_run(cfg: DictConfig, study_name: str, storage: str) -> Iterator[Any]:
    """The study's parent run (an MLFlowLogger) while the study runs, or None when no logger is MLflow.

    `storage`: the study's storage URL, found again by its tag (password masked) on a resumed study."""
    keys = mlflow_logger_keys(cfg)
    if not keys:
        yield None
        return
    check_logger_extras(cfg.logger)
    from mlflow.tracking import MlflowClient

    quiet_request_header_plugins()

    node = cfg.logger[keys[0]]
    # The store MLFlowLogger itself would use (its fallback when no tracking URI is given).
    client = MlflowClient(node.get("tracking_uri") or f"file:{node.get('save_dir') or './mlruns'}")
    experiment = client.get_experiment_by_name(str(node.experiment_name))
    key = study_key(study_name, mask_secrets(storage))
    existing = (
        client.search_runs([experiment.experiment_id], f"tags.`{STUDY_TAG}` = '{key}'", max_results=1)
        if experiment
        else []
    )
    if existing:  # a resumed study: its new trials join the same parent run
        parent = instantiate_logger(node, run_id=existing[0].info.run_id)
    else:
        parent = instantiate_logger(node, run_name=f"study {study_name}", tags={STUDY_TAG: key})
        recorded = config_for_records(cfg)  # tune.storage='${oc.env:...}' stays a reference
        parent.log_hyperparams({"tune": recorded["tune"], "search": recorded["search"]})
    status = "failed"
    try:
        yield parent
        status = "success"
    finally:
        parent.finalize(status)


def nest_trial(trial_cfg: DictConfig, parent_run_id: str, trial_number: int) -> DictConfig:
    """The trial's config with its MLflow run(s) named after the trial and nested under the study's run."""
    for key in mlflow_logger_keys(trial_cfg):
        node = trial_cfg.logger[key]
        tags = dict(OmegaConf.to_container(node.tags, resolve=True)) if node.get("tags") else {}  # type: ignore[arg-type]
        node.tags = {**mask_secrets(tags), PARENT_TAG: parent_run_id, TRIAL_TAG: str(trial_number)}
        node.run_name = f"trial {trial_number}"
        # The study logs the models it keeps when it ends (log_kept_models), not each trial's.
        node.log_exported_model = False
        node.registered_model_name = None
    return trial_cfg


def log_kept_models(parent: Any, study_cfg: DictConfig, kept: list[Any]) -> None:
    """Log the exported model of each kept trial (best first) to that trial's run, once, and register the
    best one when logger.mlflow.registered_model_name names a model."""
    values = mlflow_model_values(study_cfg.get("logger"))
    if not values.log_exported_model:
        return
    client, parent_id = parent.experiment, parent.run_id
    for rank, trial in enumerate(kept):
        model_dir = Path(trial.user_attrs.get("run_dir", "")) / "model"
        found = client.search_runs(
            [parent.experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent_id}' AND tags.`{TRIAL_TAG}` = '{trial.number}'",
            max_results=1,
        )
        if not found or not model_dir.is_dir() or found[0].data.tags.get(MODEL_TAG):
            continue  # no run (MLflow was added to a resumed study), no model, or logged by an earlier run
        name = values.registered_model_name if rank == 0 else None
        info = log_model(client.tracking_uri, found[0].info.run_id, model_dir, name)
        client.set_tag(found[0].info.run_id, MODEL_TAG, info.model_uri)


def log_study_result(parent: Any, study: Any) -> None:
    """The study's outcome on its parent run: finished trials, the best value and the best trial's values
    (as tags: a run's params are written once, and a resumed study may find a better trial)."""
    from optuna.trial import TrialState

    client, run_id = parent.experiment, parent.run_id
    trials = study.get_trials(deepcopy=False)
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        client.log_metric(
            run_id, f"trials_{state.name.lower()}", float(sum(t.state == state for t in trials))
        )
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
        client.log_metric(run_id, "best_value", float(best.value))
        client.set_tag(run_id, "best_trial", str(best.number))
        for key, value in best.params.items():
            client.set_tag(run_id, f"best.{key}", str(value))
