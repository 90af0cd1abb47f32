"""Tidy runs: a run that fails before it trains leaves no folder (but never removes one that was there), and
a finished smoke run keeps its model, not its checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def train_py(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path):
    bad = ["experiment=smoke", f"data.root={tmp_path / 'nowhere'}", "data.download=false"]
    # The folder Hydra names itself (runs/smoke/<time>) and one named with hydra.run.dir: both gone.
    default = train_py(tmp_path, *bad, f"paths.runs_dir={tmp_path / 'runs'}")
    assert default.returncode == 2, default.stderr[-3000:]
    assert [p for p in (tmp_path / "runs").rglob("*") if not p.is_dir()] == []
    named = train_py(tmp_path, *bad, "hydra.run.dir=new")
    assert named.returncode == 2, named.stderr[-3000:]
    assert not (tmp_path / "new").exists()
    # A folder that was there before is never removed, nor anything in it.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    kept = train_py(tmp_path, *bad, "hydra.run.dir=mine")
    assert kept.returncode == 2, kept.stderr[-3000:]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
