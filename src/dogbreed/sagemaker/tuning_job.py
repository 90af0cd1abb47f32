"""The tuning job: a HyperparameterTuner around the training job's estimator, over the same search space
as a local study (conf/search/*.yaml) and its objective (tune.objective / tune.direction)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.config.overrides import TUNE_ONLY_KEYS, format_override, without_keys
from dogbreed.sagemaker.dry_run import sdk_log_of, show_request
from dogbreed.sagemaker.metrics import metric_definitions
from dogbreed.sagemaker.session import SageMakerSetupError, aws_errors, sdk
from dogbreed.sagemaker.training_job import (
    _prepare_job,
    _staged_source,
    build_estimator,
    check_job_overrides,
    job_name_for,
)
from dogbreed.training.metric_lines import METRIC_NAMES
from dogbreed.tuning.objective import TuneConfigError, objective_of
from dogbreed.tuning.search_space import Param, load_search_space, search_space_to_sagemaker


def tuning_objective(cfg: DictConfig) -> tuple[str, str]:
    """tune.objective / tune.direction, the one objective of a local study and a SageMaker tuning job."""
    if cfg.get("tune") is None:
        raise SageMakerSetupError("a tuning job is launched by tune.py (its config holds tune.objective)")
    try:
        objective = objective_of(cfg.tune)
    except TuneConfigError as e:
        raise SageMakerSetupError(str(e)) from None
    if objective.metric not in METRIC_NAMES:
        raise SageMakerSetupError(
            f"tune.objective={objective.metric} is not a metric train.py prints: " + ", ".join(METRIC_NAMES)
        )
    return objective.metric, objective.direction


def static_train_overrides(overrides: Sequence[str], tuned: Any = ()) -> list[str]:
    """tune.py's overrides as every training job of a tuning job takes them: tune-only keys (search=,
    tune.*) and the tuned keys out; each job gets the tuned values from the service."""
    return without_keys(overrides, TUNE_ONLY_KEYS, also=tuned)


def build_tuner(
    cfg: DictConfig,
    overrides: Sequence[str],
    space: Mapping[str, Any],
    session: Any,
    role: str,
    source: Path,
    tuning_name: str | None = None,
):
    """A HyperparameterTuner around the training estimator; tuned keys leave the job's static overrides."""
    from sagemaker.tuner import HyperbandStrategyConfig, HyperparameterTuner, StrategyConfig

    tuning = cfg.backend.tuning
    objective, direction = tuning_objective(cfg)
    params = space if all(isinstance(p, Param) for p in space.values()) else load_search_space(space)
    sdk()
    ranges = search_space_to_sagemaker(params)
    static = static_train_overrides(overrides, ranges)
    for kind in ("debugger", "profiler"):
        if (cfg.backend.get(kind) or {}).get("enabled"):
            raise SageMakerSetupError(
                f"backend.{kind}.enabled=true: a tuning job's training jobs run no SageMaker {kind} rules;"
                f" use {kind}=on instead (our rules run inside every training job and print rule/* lines)"
            )
    # Each training job gets the static overrides plus one value of every range: check with the lowest.
    point = [format_override(p.name, p.choices[0] if p.choices else p.low) for p in params.values()]
    check_job_overrides([*static, *point], "every training job of the tuning job")
    estimator = build_estimator(cfg, static, session, role, source, checkpoint_name=tuning_name)
    strategy_config, early_stopping = None, tuning.early_stopping
    if tuning.strategy == "Hyperband":
        strategy_config = StrategyConfig(
            HyperbandStrategyConfig(
                min_resource=int(tuning.hyperband.min_resource),
                max_resource=int(tuning.hyperband.max_resource),
            )
        )
        early_stopping = "Off"  # Hyperband's own early stopping replaces SageMaker's
    elif tuning.strategy not in ("Bayesian", "Random"):
        raise SageMakerSetupError(
            f"backend.tuning.strategy must be Bayesian, Random or Hyperband: {tuning.strategy}"
        )
    return HyperparameterTuner(
        estimator,
        objective_metric_name=objective,
        hyperparameter_ranges=ranges,
        metric_definitions=metric_definitions(),
        strategy=tuning.strategy,
        strategy_config=strategy_config,
        objective_type=direction.capitalize(),
        max_jobs=int(tuning.max_jobs),
        max_parallel_jobs=int(tuning.max_parallel_jobs),
        early_stopping_type=early_stopping,
        base_tuning_job_name=_tuning_job_prefix(cfg.backend.base_job_name),
        tags=[
            {"Key": str(k), "Value": str(v)}
            for k, v in {**estimator_tags(estimator), **(cfg.backend.get("tags") or {})}.items()
        ],
    )


def estimator_tags(estimator: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (estimator.tags or [])}


def _tuning_job_prefix(name: str) -> str:
    return name[:20]  # the SDK appends a timestamp; tuning job names are capped at 32 characters


def launch_tuning(cfg: DictConfig, overrides: Sequence[str], space: Mapping[str, Any]) -> dict:
    """Start (or print, with backend.dry_run) the tuning job; with backend.wait, follow it to the end and
    bring the best job's values and files into the run directory (see `attach_tuning`)."""
    backend = cfg.backend
    with aws_errors():
        dry_run, session, role, inputs = _prepare_job(cfg, overrides, kind="tuning")
        name = job_name_for(_tuning_job_prefix(backend.base_job_name), tuning=True)
        with _staged_source(cfg) as source_dir:
            tuner = build_tuner(cfg, overrides, space, session, role, source_dir, tuning_name=name)
            with sdk_log_of(dry_run):
                tuner.fit(inputs, job_name=name, wait=False)
        if dry_run is not None:
            return show_request(
                cfg.run_dir, dry_run.request("CreateHyperParameterTuningJob"), "tuning_job_request.json"
            )
        print(f"tuning_job={name}", file=sys.stderr)
        if backend.wait:
            from dogbreed.sagemaker.results import attach_tuning

            return attach_tuning(cfg, session, name)
        return session.sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
