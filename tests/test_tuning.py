"""tune.py end to end: a study of real training.fit trials, pruning, resume after a kill, best overrides."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from dogbreed.tuning.report import write_best, write_trials_csv
from dogbreed.tuning.study import KeepBestModels, TuneConfigError, create_study, objective_of, run_study
from tests.conftest import ROOT, TINY, compose_config

N_TRIALS = 3


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DOGBREED_CACHE": str(cache),
        "TORCH_HOME": str(cache / "t"),
    }


def _finished(storage: optuna.storages.RDBStorage) -> list[optuna.trial.FrozenTrial]:
    studies = storage.get_all_studies()
    if not studies:
        return []
    return storage.get_all_trials(studies[0]._study_id, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _running_with_heartbeat(storage: optuna.storages.RDBStorage, db: Path) -> list[optuna.trial.FrozenTrial]:
    """Running trials whose heartbeat has been recorded (only those can be found stale later)."""
    studies = storage.get_all_studies()
    if not studies:
        return []
    running = storage.get_all_trials(studies[0]._study_id, states=(TrialState.RUNNING,))
    with sqlite3.connect(db) as conn:
        beating = {row[0] for row in conn.execute("SELECT trial_id FROM trial_heartbeats")}
    return [t for t in running if t._trial_id in beating]


@pytest.fixture(scope="module")
def killed_and_resumed(shapes3: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """tune.py killed (SIGKILL) with one trial finished and the next running, then rerun into the same run
    directory once the running trial's heartbeat is older than the grace period."""
    run_dir = tmp_path_factory.mktemp("tune")
    env = _env(tmp_path_factory.getbasetemp() / "cache")
    command = [
        sys.executable,
        "tune.py",
        f"hydra.run.dir={run_dir}",
        *TINY,
        f"data.root={shapes3}",
        "data.images_per_class=8",
        "model.freeze=head",
        "search=smoke",
        f"tune.n_trials={N_TRIALS}",
        "tune.heartbeat_interval=1",
        "tune.grace_period=2",
    ]
    db = run_dir / "study.db"
    with open(run_dir / "first.err", "w") as err:
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    storage = None
    try:
        while True:  # poll the study's storage until a trial has finished and the next runs, then kill
            try:
                first.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            else:
                pytest.fail(
                    f"tune.py ended before it was killed: {(run_dir / 'first.err').read_text()[-3000:]}"
                )
            if storage is None and db.is_file():
                storage = optuna.storages.RDBStorage(f"sqlite:///{db}", heartbeat_interval=1, grace_period=2)
            if storage is not None and _finished(storage) and _running_with_heartbeat(storage, db):
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=60)
                break
    finally:
        if first.poll() is None:
            first.kill()
    before = {t.number: (t.state, t.value, t.params) for t in _finished(storage)}
    interrupted = {t.number: t.params for t in _running_with_heartbeat(storage, db)}
    # The dead process's trial becomes stale once its last heartbeat is older than the grace period: wait
    # for exactly that condition, as the storage itself judges it.
    study_id = storage.get_all_studies()[0]._study_id
    deadline = time.monotonic() + 60
    while len(storage._get_stale_trial_ids(study_id)) < len(interrupted):
        assert time.monotonic() < deadline, "the killed trial never became stale"
        time.sleep(0.2)
    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run_dir / "tune.log").read_text()
    return {
        "run_dir": run_dir,
        "before": before,
        "interrupted": interrupted,
        "stdout": resumed.stdout,
        "log": log,
    }


@pytest.mark.slow
def test_resume_after_kill_keeps_finished_trials_and_reaches_the_count(killed_and_resumed):
    before = killed_and_resumed["before"]
    assert 1 <= len(before) < N_TRIALS
    study = optuna.load_study(
        study_name="dogbreed", storage=f"sqlite:///{killed_and_resumed['run_dir']}/study.db"
    )
    finished = {t.number: (t.state, t.value, t.params) for t in study.trials if t.state.is_finished()}
    assert {n: finished[n] for n in before} == before  # kept as they were, not rerun
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == N_TRIALS
    # The trial the kill interrupted is marked failed, and run again with its parameters.
    interrupted = killed_and_resumed["interrupted"]
    assert len(interrupted) == 1
    for number, params in interrupted.items():
        assert study.trials[number].state == TrialState.FAIL
        (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED) and retry.params == params
        assert (
            f"trial {number} stopped without finishing (its process died): marked failed and queued"
            in (killed_and_resumed["log"])
        )
    assert all(t.state.is_finished() for t in study.trials)
    assert f"resumed with {len(before)} finished trials" in killed_and_resumed["log"]
    new_params = [t.params for t in done if t.number not in before]
    assert all(p not in [old[2] for old in before.values()] for p in new_params), "resume replayed a trial"


@pytest.mark.slow
def test_study_writes_best_trial_overrides_table_and_plots(killed_and_resumed):
    run_dir = killed_and_resumed["run_dir"]
    best = OmegaConf.load(run_dir / "best_params.yaml")
    assert set(best.params) == {"model.lr", "model.weight_decay", "data.batch_size", "trainer.max_epochs"}
    assert f"best trial {best.trial} of study dogbreed" in killed_and_resumed["stdout"]
    trial_metrics = json.loads((Path(best.user_attrs.run_dir) / "metrics.json").read_text())
    assert best.value == pytest.approx(trial_metrics["val/loss"])
    assert (Path(best.user_attrs.run_dir) / "model" / "weights.pt").is_file()
    assert not (Path(best.user_attrs.run_dir) / "checkpoints").exists()  # trials write no checkpoints
    # tune.keep_models=1 (the default): only the best trial keeps its exported model; the rest keep metrics.
    trial_dirs = sorted((run_dir / "trials").iterdir())
    assert [d for d in trial_dirs if (d / "model").exists()] == [Path(best.user_attrs.run_dir)]
    others = [d for d in trial_dirs if d != Path(best.user_attrs.run_dir) and (d / "metrics.json").is_file()]
    assert others

    with open(run_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) in (N_TRIALS, N_TRIALS + 1) and {"params_model.lr", "value", "state"} <= set(rows[0])
    assert sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows) == N_TRIALS
    for name in ("optimization_history", "parallel_coordinate", "slice", "param_importances"):
        assert (run_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name


@pytest.mark.slow
def test_best_overrides_file_runs_in_train_py(killed_and_resumed, tmp_path):
    run_dir = killed_and_resumed["run_dir"]
    overrides = (run_dir / "best_overrides.txt").read_text().split()
    best = OmegaConf.load(run_dir / "best_params.yaml")
    result = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        env=_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    used = OmegaConf.load(tmp_path / "config.yaml")
    for key, value in best.params.items():
        assert OmegaConf.select(used, key) == value, key
    # The tune run's own overrides come along.
    assert used.model.arch == "resnet18" and used.data.image_size == 32 and used.model.freeze == "head"
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == best.params["trainer.max_epochs"]


@pytest.mark.slow
def test_pruning_stops_a_trial_far_worse_than_a_finished_one(shapes3, tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            f"data.root={shapes3}",
            "data.images_per_class=8",
            "model.freeze=head",
            "trainer.max_epochs=2",
            "tune.n_trials=2",
            "tune.sampler=null",
            # Prune from the second trial on, at its first validation, when it is worse than the median.
            "tune.pruner.n_startup_trials=1",
            "tune.pruner.n_warmup_steps=0",
        ],
        config_name="tune",
    )
    cfg.search = {"model.lr": {"type": "categorical", "choices": [1.0e-3, 10.0]}}
    study = create_study(cfg)
    study.enqueue_trial({"model.lr": 1.0e-3})
    study.enqueue_trial({"model.lr": 10.0})  # AdamW at lr 10 wrecks the network at the first step

    study = run_study(cfg)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [0, 1]
    assert bad.state == TrialState.PRUNED
    assert list(bad.intermediate_values) == [0]  # stopped after its first epoch of two
    assert not (Path(bad.user_attrs["run_dir"]) / "metrics.json").exists()


def test_objective_direction_follows_the_metric_and_bad_settings_are_named():
    assert objective_of({"objective": "val/loss", "direction": "auto"}).direction == "minimize"
    assert objective_of({"objective": "val/acc", "direction": "auto"}).direction == "maximize"
    with pytest.raises(TuneConfigError, match=r"tune\.objective='train/loss'.*validation metric"):
        objective_of({"objective": "train/loss"})
    with pytest.raises(TuneConfigError, match=r"tune\.direction='up' is not one of"):
        objective_of({"objective": "val/acc", "direction": "up"})


def test_tune_config_composes_with_sqlite_in_the_run_dir_and_instantiable_sampler_pruner(tmp_path):
    from hydra.utils import instantiate

    hyperband = [
        "tune.pruner._target_=optuna.pruners.HyperbandPruner",
        "~tune.pruner.n_startup_trials",
        "~tune.pruner.n_warmup_steps",
    ]
    cfg = compose_config(tmp_path, hyperband, config_name="tune")
    assert cfg.tune.storage == f"sqlite:///{tmp_path}/study.db"
    assert isinstance(instantiate(cfg.tune.pruner), optuna.pruners.HyperbandPruner)
    assert isinstance(instantiate(cfg.tune.sampler), optuna.samplers.TPESampler)
    assert cfg.callbacks.model_checkpoint is None and cfg.trainer.enable_checkpointing is False


def _study_with(*trials: tuple[float, float]) -> optuna.Study:
    study = optuna.create_study(study_name="atomic", direction="minimize")
    lr = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
    for value, rate in trials:
        study.add_trial(
            optuna.trial.create_trial(params={"model.lr": rate}, distributions={"model.lr": lr}, value=value)
        )
    return study


def test_best_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    names = ("best_overrides.txt", "best_params.yaml", "trials.csv")
    write_best(_study_with((0.5, 0.1)), tmp_path, ["data.root=/d"])
    write_trials_csv(_study_with((0.5, 0.1)), tmp_path)
    before = {name: (tmp_path / name).read_text() for name in names}
    assert "model.lr=0.1" in before["best_overrides.txt"]

    better = _study_with((0.5, 0.1), (0.2, 0.003))

    def killed(*_):  # the process dies after writing the new content, before it is in place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    for write in (
        lambda: write_best(better, tmp_path, ["data.root=/d"]),
        lambda: write_trials_csv(better, tmp_path),
    ):
        with pytest.raises(KeyboardInterrupt):
            write()
    assert {name: (tmp_path / name).read_text() for name in names} == before
    monkeypatch.undo()

    write_best(better, tmp_path, ["data.root=/d"])
    assert (tmp_path / "best_overrides.txt").read_text() == "data.root=/d\nmodel.lr=0.003\n"
    assert OmegaConf.load(tmp_path / "best_params.yaml").trial == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary file left


@pytest.mark.parametrize(
    "direction, keep, kept", [("minimize", 1, [1]), ("maximize", 2, [0, 2]), ("minimize", None, [0, 1, 2])]
)
def test_only_the_best_trials_keep_their_exported_models(tmp_path, direction, keep, kept):
    study = optuna.create_study(direction=direction)
    lr = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
    for number, value in enumerate([0.5, 0.1, 0.3]):
        run_dir = tmp_path / f"{number:04d}"
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "metrics.json").write_text("{}")
        study.add_trial(
            optuna.trial.create_trial(
                params={"model.lr": 0.01},
                distributions={"model.lr": lr},
                value=value,
                user_attrs={"run_dir": str(run_dir)},
            )
        )
    KeepBestModels(keep)(study, study.trials[-1])
    assert [n for n in range(3) if (tmp_path / f"{n:04d}" / "model").is_dir()] == kept
    # The same trials, best first, are those whose models a study logs to MLflow when it ends.
    ranked = [t.number for t in KeepBestModels(keep).kept(study)]
    assert sorted(ranked) == kept and ranked[0] == (1 if direction == "minimize" else 0)
    assert all((tmp_path / f"{n:04d}" / "metrics.json").is_file() for n in range(3))
    with pytest.raises(TuneConfigError, match="tune.keep_models=-1"):
        KeepBestModels(-1)
