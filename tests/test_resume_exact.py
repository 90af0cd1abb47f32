"""A run killed after epoch 1 of 3 and resumed follows the uninterrupted run epoch for epoch; resuming a
finished run changes nothing."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dogbreed.training.fit import fit
from tests.conftest import ROOT, TINY, compose_config

pytestmark = pytest.mark.slow

EPOCH_KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")

# fit() in a child process; with "kill", killed with SIGKILL (as the OOM killer or a lost machine would) when
# epoch 2 starts: after epoch 1's checkpoint, before anything of epoch 2 is saved.
FIT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning.pytorch as pl
    from dogbreed.training.fit import fit
    from tests.conftest import compose_config

    class KillAtEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    kill = sys.argv[1] == "kill"
    fit(compose_config(sys.argv[2], sys.argv[3:]), extra_callbacks=[KillAtEpoch()] if kill else [])
    """
)


def run_in_a_process(run_dir: Path, overrides: list[str], kill: bool = False) -> subprocess.CompletedProcess:
    """fit() in a process of its own, as every real run is: nothing left by other tests in this process
    (threads, global generators, imported runtimes) can touch it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, "kill" if kill else "run", str(run_dir), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def epoch_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """{epoch: {metric: value}} merged over every logs/version_*/metrics.csv of the run."""
    rows: dict[int, dict[str, float]] = {}
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                values = {k: float(v) for k, v in row.items() if k in EPOCH_KEYS and v not in ("", None)}
                if values:
                    rows.setdefault(int(row["epoch"]), {}).update(values)
    return rows


@pytest.fixture(scope="module")
def overrides(shapes3: Path) -> list[str]:
    # A little dropout and the full augmentation, so that every random draw matters.
    return [*TINY, f"data.root={shapes3}", "trainer.max_epochs=3", "model.dropout=0.2"]


@pytest.fixture(scope="module")
def uninterrupted(overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    done = run_in_a_process(run_dir, overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_a_run_killed_after_epoch_1_resumes_as_if_never_stopped(overrides, uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    killed = run_in_a_process(run_dir, overrides, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert sorted(epoch_rows(run_dir)) == [0, 1]

    done = run_in_a_process(run_dir, [*overrides, "ckpt_path=last"])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((run_dir / "metrics.json").read_text())

    expected, got = epoch_rows(uninterrupted), epoch_rows(run_dir)
    assert sorted(got) == sorted(expected) == [0, 1, 2]
    for epoch in (0, 1, 2):
        for key in EPOCH_KEYS:
            assert got[epoch][key] == pytest.approx(expected[epoch][key], rel=1e-5, abs=1e-6), (epoch, key)
    final = json.loads((uninterrupted / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/loss", "train/loss"):
        assert resumed[key] == pytest.approx(final[key], rel=1e-5, abs=1e-6), key


def test_resuming_a_finished_run_keeps_its_metrics(overrides, uninterrupted, caplog):
    before = (uninterrupted / "metrics.json").read_text()
    record = {name: (uninterrupted / name).read_text() for name in ("config.yaml", "manifest.json")}
    model_weights = (uninterrupted / "model" / "weights.pt").stat().st_mtime_ns
    with caplog.at_level("WARNING", logger="dogbreed.training.resume"):
        again = fit(compose_config(uninterrupted, [*overrides, "ckpt_path=last"]))
    assert (uninterrupted / "metrics.json").read_text() == before
    assert again == json.loads(before)
    assert {"train/loss", "val/loss", "test/acc"} <= set(again) and again["fit_seconds"] > 0.5
    assert (uninterrupted / "model" / "weights.pt").stat().st_mtime_ns == model_weights
    assert "nothing to resume" in caplog.text
    # The run's record stays the one it was trained with: the resume's own config is not written over it.
    assert {name: (uninterrupted / name).read_text() for name in record} == record
