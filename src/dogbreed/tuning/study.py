"""Local hyperparameter tuning with Optuna: every trial is one `training.fit` run of the train config.

tune.py composes conf/tune.yaml (the train config + `search` + `tune`); `run_study(cfg)` samples the search
space with the configured sampler, applies the values as overrides to the train config, gives each trial its
own run directory under <run_dir>/trials/, and prunes through optuna-integration's Lightning callback.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from dogbreed.config.overrides import TUNE_ONLY_KEYS, without_keys
from dogbreed.config.secrets import mask_secrets
from dogbreed.tracking.manifest import hydra_overrides
from dogbreed.tracking.mlflow_study import (
    log_kept_models,
    log_study_result,
    nest_trial,
    study_parent_run,
)
from dogbreed.tuning.objective import TuneConfigError, objective_of
from dogbreed.tuning.search_space import SearchSpaceError, load_search_space, search_space_to_optuna

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def train_config(cfg: DictConfig) -> DictConfig:
    """The train config inside a tune config: everything but `tune` and `search`, resolved lazily."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in TUNE_ONLY_KEYS:
        container.pop(key, None)
    return OmegaConf.create(container)


def trial_config(base: DictConfig, params: Mapping[str, Any], run_dir: str | Path) -> DictConfig:
    """`base` with the trial's values set at their override keys and the run landing in `run_dir`."""
    cfg = base.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(run_dir)
    for key, value in params.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def check_keys_exist(space: Mapping[str, Any], base: DictConfig, source: str) -> None:
    missing = [key for key in space if OmegaConf.select(base, key, default="<missing>") == "<missing>"]
    if missing:
        raise SearchSpaceError(
            f"{source}: {', '.join(missing)} not found in the train config (a typo? keys look like model.lr)"
        )


def suggest(trial: optuna.Trial, distributions: Mapping[str, Any]) -> dict[str, Any]:
    """Ask the trial for a value of each parameter through Optuna's public suggest API."""
    values = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            values[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return values


def create_study(cfg: DictConfig) -> optuna.Study:
    """The study in `tune.storage` (created, or loaded when it exists and tune.load_if_exists)."""
    tune_cfg = cfg.tune
    objective = objective_of(tune_cfg)
    storage_url = str(tune_cfg.storage)
    if storage_url.startswith("sqlite:///"):
        Path(storage_url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # Heartbeats let a later run mark the trial of a killed process as failed instead of running forever;
    # the callback then queues it again with the same parameters (up to tune.retry_interrupted times).
    retries = int(tune_cfg.get("retry_interrupted") or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries else None
    storage = optuna.storages.RDBStorage(
        storage_url,
        heartbeat_interval=int(tune_cfg.get("heartbeat_interval") or 60),
        grace_period=int(tune_cfg.get("grace_period") or 120),
        heartbeat_stale_trial_callback=retry,
    )
    study = optuna.create_study(
        storage=storage,
        study_name=str(tune_cfg.study_name),
        direction=objective.direction,
        pruner=instantiate(tune_cfg.pruner) if tune_cfg.get("pruner") else optuna.pruners.NopPruner(),
        load_if_exists=bool(tune_cfg.load_if_exists),
    )
    study.sampler = make_sampler(tune_cfg.get("sampler"), already=len(study.get_trials(deepcopy=False)))
    if study.direction.name.lower() != objective.direction:
        where = mask_secrets(storage_url)
        raise TuneConfigError(
            f"study {study.study_name} in {where} was created to {study.direction.name.lower()}, but "
            f"tune.objective={objective.metric} asks to {objective.direction}: use another tune.study_name"
        )
    return study


def make_sampler(sampler_cfg: DictConfig | None, already: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler; a resumed study offsets a fixed seed by its trial count, or the seeded
    sampler would replay the very values its first run already tried."""
    if not sampler_cfg:
        return optuna.samplers.TPESampler()
    if already and sampler_cfg.get("seed") is not None:
        return instantiate(sampler_cfg, seed=int(sampler_cfg.seed) + already)
    return instantiate(sampler_cfg)


class TrialRunner:
    """The Optuna objective: one `training.fit` per trial, pruned by Lightning's validation metric."""

    def __init__(self, cfg: DictConfig) -> None:
        self.objective = objective_of(cfg.tune)
        self.space = load_search_space(cfg.search, source="search")
        self.base = train_config(cfg)
        check_keys_exist(self.space, self.base, "search")
        self.distributions = search_space_to_optuna(self.space)
        self.trials_dir = Path(cfg.run_dir) / "trials"
        # The train settings the study was started with; each trial adds its sampled values.
        self.overrides = without_keys(hydra_overrides(), TUNE_ONLY_KEYS)
        self.parent_run_id: str | None = None  # the study's MLflow run, when a logger is MLflow

    def __call__(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        from dogbreed.training.fit import fit

        params = suggest(trial, self.distributions)
        run_dir = self.trials_dir / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        log.info("trial %d: %s -> %s", trial.number, params, run_dir)
        pruning = PyTorchLightningPruningCallback(trial, monitor=self.objective.metric)
        cfg = trial_config(self.base, params, run_dir)
        if self.parent_run_id:
            cfg = nest_trial(cfg, self.parent_run_id, trial.number)
        overrides = [*self.overrides, *(f"{key}={value}" for key, value in params.items())]
        metrics = fit(cfg, extra_callbacks=[pruning], overrides=overrides)
        if not metrics:
            raise RuntimeError(f"trial {trial.number} was interrupted before training ended ({run_dir})")
        if self.objective.metric not in metrics:
            raise TuneConfigError(
                f"trial {trial.number} logged no {self.objective.metric} (tune.objective); "
                f"it logged {', '.join(sorted(k for k in metrics if '/' in k))}"
            )
        for name in ("test/loss", "test/acc", "epochs", "fit_seconds"):
            if name in metrics:
                trial.set_user_attr(name, metrics[name])
        return float(metrics[self.objective.metric])


class KeepBestModels:
    """After each trial, remove the exported model of every finished trial outside the best `keep`.

    Each trial exports its whole network (about 100 MB for ResNet50); a study of many trials would leave
    them all behind. Running trials are left alone (their export may be under way); so is everything else in
    a trial's run directory (metrics, logs, evaluation). `keep=None` keeps every model.
    """

    def __init__(self, keep: int | None) -> None:
        if keep is not None and (not isinstance(keep, int) or keep < 0):
            raise TuneConfigError(f"tune.keep_models={keep} is not allowed: use null (all) or 0 or more")
        self.keep = keep

    def kept(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The completed trials whose models are kept, best first."""
        sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
        ranked = sorted(completed(study), key=lambda t: sign * (t.value if t.value is not None else math.inf))
        return ranked if self.keep is None else ranked[: self.keep]

    def __call__(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if self.keep is None:
            return
        kept = {t.number for t in self.kept(study)}
        for trial in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)):
            model_dir = Path(trial.user_attrs.get("run_dir", "")) / "model"
            if trial.number not in kept and trial.user_attrs.get("run_dir") and model_dir.is_dir():
                shutil.rmtree(model_dir, ignore_errors=True)  # another process may be removing it too
                log.info("trial %d is not among the best %d: removed %s", trial.number, self.keep, model_dir)


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_interrupted(study: optuna.Study) -> list[int]:
    """Mark failed the running trials whose process stopped (no heartbeat for tune.grace_period seconds),
    queueing each again when tune.retry_interrupted allows; the numbers of the trials failed.

    Optuna does this before each new trial too; doing it first also covers a rerun with nothing left to run.
    """
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = [
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in running
    ]
    retried = {
        t.system_attrs.get("retry_history", [None])[-1]
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    }
    for number in failed:
        again = " and queued again with its parameters" if number in retried else ""
        log.warning("trial %d stopped without finishing (its process died): marked failed%s", number, again)
    return failed


def run_study(cfg: DictConfig) -> optuna.Study:
    """Run (or resume) the study until it holds `tune.n_trials` finished trials or `tune.timeout` passes."""
    tune_cfg = cfg.tune
    n_trials = int(tune_cfg.n_trials)
    if n_trials < 1:
        raise TuneConfigError(f"tune.n_trials={n_trials} must be at least 1")
    runner = TrialRunner(cfg)  # validates the search space before a study is created
    keep_models = KeepBestModels(tune_cfg.get("keep_models"))
    study = create_study(cfg)
    fail_interrupted(study)
    done = count_finished(study)
    if done:
        log.info("study %s resumed with %d finished trials", study.study_name, done)
    with study_parent_run(cfg, study.study_name, str(tune_cfg.storage)) as parent:
        runner.parent_run_id = parent.run_id if parent else None
        run_missing_trials(study, runner, tune_cfg, callbacks=[keep_models])
        if parent:
            log_study_result(parent, study)
            log_kept_models(parent, cfg, keep_models.kept(study))
    return study


def run_missing_trials(
    study: optuna.Study, runner: TrialRunner, tune_cfg: DictConfig, callbacks: Sequence[Any]
) -> None:
    """Run trials until the study holds `tune.n_trials` finished ones, or `tune.timeout` passes.

    Other processes (machines) may work on the same study. Each round starts only the trials nobody runs
    yet, the missing ones less those running elsewhere, so that the study ends with exactly n_trials
    finished trials rather than one more per worker. When every missing trial runs elsewhere this process
    waits: those trials finish, or their process died, and once stale (tune.grace_period) they are failed
    and queued again (tune.retry_interrupted) for whichever process asks next.
    """
    n_trials = int(tune_cfg.n_trials)
    n_jobs = int(tune_cfg.get("n_jobs") or 1)
    timeout = tune_cfg.get("timeout")
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    poll = float(tune_cfg.get("heartbeat_interval") or 60)
    while True:
        fail_interrupted(study)
        missing = n_trials - count_finished(study)
        left = None if deadline is None else deadline - time.monotonic()
        if missing <= 0 or (left is not None and left <= 0):
            return
        free = missing - len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if free <= 0:
            log.info("the %d missing trials run in other processes: waiting for them", missing)
            time.sleep(poll if left is None else min(poll, left))
            continue
        batch = min(free, n_jobs)
        study.optimize(
            runner, n_trials=batch, timeout=left, n_jobs=batch, callbacks=callbacks, gc_after_trial=True
        )


def completed(study: optuna.Study) -> Sequence[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
