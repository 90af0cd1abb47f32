"""Several tune.py processes on one study in a real PostgreSQL server: the study ends with exactly
tune.n_trials finished trials, and the trial of a worker killed mid-trial is run again by the other."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, TINY

# Debian's postgresql package: the newest installed major version's server binaries.
PG_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=Path("none")
)
N_TRIALS = 3
STUDY = "shared"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust authentication, fsync off), stopped afterwards."""
    if not (PG_BIN / "initdb").is_file() or (os.geteuid() == 0 and not shutil.which("runuser")):
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (apt-get install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="dogbreed-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    data, port = home / "data", _free_port()
    started = False
    try:
        init = subprocess.run(
            _as_postgres_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr[-1000:]}")
        log = home / "server.log"
        options = f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            _as_postgres_user(
                [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "start"]
            ),
            capture_output=True,
            timeout=60,
        )
        started = True
        deadline = time.monotonic() + 60
        ready = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        while subprocess.run(ready, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                pytest.skip(f"PostgreSQL did not start: {log.read_text()[-1000:] if log.is_file() else ''}")
            time.sleep(0.2)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(_as_postgres_user(stop), capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _worker(run_dir: Path, url: str, seed: int, shapes3: Path, cache: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "tune.py",
        f"hydra.run.dir={run_dir}",
        *TINY,
        f"data.root={shapes3}",
        "data.images_per_class=8",
        "model.freeze=head",
        "search=smoke",
        f"seed={seed}",
        f"tune.storage={url}",
        f"tune.study_name={STUDY}",
        f"tune.n_trials={N_TRIALS}",
        "tune.heartbeat_interval=1",
        "tune.grace_period=2",
        "tune.pruner=null",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",  # every trial counts the same; pruning has its own test
    ]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DOGBREED_CACHE": str(cache),
        "TORCH_HOME": str(cache / "t"),
    }
    run_dir.mkdir(parents=True)
    with open(run_dir / "stderr.txt", "w") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _trials(storage: optuna.storages.RDBStorage) -> list[optuna.trial.FrozenTrial]:
    studies = [s for s in storage.get_all_studies() if s.study_name == STUDY]
    return storage.get_all_trials(studies[0]._study_id) if studies else []


def _of(trials: list[optuna.trial.FrozenTrial], run_dir: Path, *states: TrialState) -> list:
    return [
        t for t in trials if t.state in states and t.user_attrs.get("run_dir", "").startswith(str(run_dir))
    ]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_workers_share_a_study_and_retry_a_killed_workers_trial(postgres_url, shapes3, tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first = _worker(first_dir, postgres_url, 1, shapes3, tmp_path / "cache")
    second = _worker(second_dir, postgres_url, 2, shapes3, tmp_path / "cache")
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        # Kill the first worker once it has finished a trial and is in the middle of its next one.
        deadline = time.monotonic() + 300
        while True:
            assert first.poll() is None, (first_dir / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first worker never finished a trial and began another"
            trials = _trials(storage)
            running = _of(trials, first_dir, TrialState.RUNNING)
            if _of(trials, first_dir, TrialState.COMPLETE) and running:
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=60)
                killed = running[0]
                break
            time.sleep(0.2)
        assert second.wait(timeout=600) == 0, (second_dir / "stderr.txt").read_text()[-3000:]
    finally:
        for worker in (first, second):
            if worker.poll() is None:
                worker.kill()
    trials = _trials(storage)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # Exactly n_trials finished, both workers contributed, and no trial trained beyond them.
    assert len(finished) == N_TRIALS, [(t.number, t.state) for t in trials]
    assert _of(finished, first_dir, TrialState.COMPLETE) and _of(finished, second_dir, TrialState.COMPLETE)
    trained = sorted(p.parent for d in (first_dir, second_dir) for p in d.glob("trials/*/metrics.json"))
    assert trained == sorted(Path(t.user_attrs["run_dir"]) for t in finished)
    # The killed trial is failed, and the second worker ran it again with the same values.
    assert next(t for t in trials if t.number == killed.number).state == TrialState.FAIL
    retries = [
        t
        for t in finished
        if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) is not None
    ]
    assert [optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in retries] == [
        killed.number
    ]
    assert retries[0].params == killed.params
    assert retries[0].user_attrs["run_dir"].startswith(str(second_dir))
