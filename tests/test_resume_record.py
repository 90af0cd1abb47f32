"""`python train.py resume=<run>` (and `hydra.run.dir=<run> ckpt_path=last`) resumes with the run's own
recorded overrides: a finished run's files stay byte for byte, a killed run trains the model the uninterrupted
run trained, a contradicting override is one `error:` line."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dogbreed.config.errors import ConfigValueError
from dogbreed.tracking.run_record import RunRecord, write_run_record
from dogbreed.training.resume_record import resume_argv
from tests.conftest import ROOT, TINY

# Small: 8 training images a class, 2 steps an epoch; dropout so that every random draw matters.
OVERRIDES = ["data.images_per_class=8", "trainer.max_epochs=2", "model.dropout=0.2"]


def train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )


def files_of(run_dir: Path) -> dict[str, str]:
    """{path: sha256} of every file under `run_dir`."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_an_override_that_contradicts_the_record_is_one_error_line(tmp_path):
    run_dir = tmp_path / "run"
    manifest = {"overrides": ["experiment=smoke", "model.lr=0.001"]}
    write_run_record(run_dir, RunRecord(config={"model": {"lr": 0.001}}, manifest=manifest))
    before = files_of(run_dir)

    refused = train_py(f"resume={run_dir}", "model.lr=0.1")
    assert refused.returncode == 2, refused.stderr[-3000:]
    (line,) = error_lines(refused)
    assert line.startswith(
        f"error: resume={run_dir}: model.lr=0.1 contradicts the run's recorded model.lr=0.001"
    )
    assert "trainer.max_epochs" in line  # what a resume may change

    nowhere = tmp_path / "nowhere"
    unknown = train_py(f"resume={nowhere}")
    assert unknown.returncode == 2 and error_lines(unknown) == [
        f"error: resume={nowhere}: no run is recorded there (no manifest.json): name a run's folder"
    ]
    assert files_of(run_dir) == before


def test_a_resume_is_spelled_out_from_the_record(tmp_path):
    run_dir = tmp_path / "run"
    manifest = {"overrides": ["experiment=smoke", "model.lr=0.001"]}
    write_run_record(run_dir, RunRecord(config={"model": {"lr": 0.001}, "seed": 42}, manifest=manifest))
    # The same value spelled another way, or one only config.yaml holds, is no contradiction; more epochs
    # are allowed and come last.
    argv = resume_argv([f"resume={run_dir}", "model.lr=1e-3", "seed=42", "trainer.max_epochs=9"])
    assert argv == [
        "experiment=smoke",
        "model.lr=0.001",
        "trainer.max_epochs=9",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
        "hydra.output_subdir=null",
    ]
    # Trained on in a new folder: from the run's last checkpoint, the new folder's own Hydra files written.
    new = tmp_path / "more"
    assert resume_argv([f"resume={run_dir}", f"hydra.run.dir={new}"])[-2:] == [
        f"hydra.run.dir={new}",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
    ]
    assert resume_argv(["experiment=smoke", "ckpt_path=last"]) == ["experiment=smoke", "ckpt_path=last"]


def test_a_credential_the_record_masked_must_be_given_again(tmp_path):
    run_dir = tmp_path / "run"
    masked = "data.url=https://h/x.zip?X-Amz-Signature=***"
    write_run_record(run_dir, RunRecord(config={}, manifest={"overrides": ["experiment=smoke", masked]}))
    with pytest.raises(ConfigValueError, match=r"data.url was recorded masked .*give it again"):
        resume_argv([f"resume={run_dir}"])
    again = "data.url=https://h/x.zip?X-Amz-Signature=abc"
    assert resume_argv([f"resume={run_dir}", again])[:2] == ["experiment=smoke", again]


@pytest.fixture(scope="module")
def args(shapes3: Path) -> list[str]:
    return [*TINY, f"data.root={shapes3}", *OVERRIDES]


@pytest.fixture(scope="module")
def finished(args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    done = train_py(*args, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_a_finished_run_resumed_without_its_overrides_keeps_every_file(finished):
    before = files_of(finished)
    assert "checkpoints/last.ckpt" in before
    for command in ([f"resume={finished}"], [f"hydra.run.dir={finished}", "ckpt_path=last"]):
        again = train_py(*command)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "nothing to resume" in again.stderr
        assert files_of(finished) == before, command
    # More epochs would write over the finished record: refused, saying where to train on.
    more = train_py(f"resume={finished}", "trainer.max_epochs=4")
    assert more.returncode == 2, more.stderr[-3000:]
    (line,) = error_lines(more)
    assert "is finished" in line and "hydra.run.dir=<new folder> trainer.max_epochs=4" in line, line
    assert files_of(finished) == before


def _kill_after_first_checkpoint(args: list[str], run_dir: Path) -> None:
    """train.py killed with SIGKILL (as a lost machine would be) once epoch 0's last.ckpt is written."""
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 1200
    while not last.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no {last}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)


@pytest.mark.slow
def test_a_killed_run_resumed_without_its_overrides_trains_the_same_model(args, finished, tmp_path):
    run_dir = tmp_path / "killed"
    _kill_after_first_checkpoint(args, run_dir)
    assert not (run_dir / "metrics.json").exists()
    record = {name: (run_dir / name).read_bytes() for name in ("config.yaml", "manifest.json")}

    refused = train_py(f"resume={run_dir}", "model.dropout=0.5")
    assert refused.returncode == 2 and len(error_lines(refused)) == 1, refused.stderr[-3000:]
    assert "model.dropout=0.5 contradicts the run's recorded model.dropout=0.2" in refused.stderr

    # The documented command, without a single one of the run's overrides.
    done = train_py(f"hydra.run.dir={run_dir}", "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    assert {name: (run_dir / name).read_bytes() for name in record} == record, (
        "the record stays as first written"
    )
    (resume,) = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert resume["ckpt_path"] == "last" and resume["overrides"] == []

    got, want = (
        torch.load(d / "model" / "weights.pt", map_location="cpu", weights_only=True)
        for d in (run_dir, finished)
    )
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)
    got_metrics, want_metrics = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, finished))
    for key in ("test/loss", "test/acc", "val/loss"):
        assert got_metrics[key] == pytest.approx(want_metrics[key], rel=1e-5, abs=1e-6), key
