"""A killed training run loses nothing: SIGKILL mid-epoch resumes from last.ckpt; SIGTERM saves one first and
exits 143 with the line that says how to resume."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from dogbreed.config.errors import ConfigValueError
from dogbreed.config.schema import check_train_config
from dogbreed.training.callbacks import timed_checkpoints
from tests.conftest import ROOT, TINY, compose_config

STEPS_PER_EPOCH = 48 // 8  # 3 classes x 16 train images of shapes3, batch 8


def _train_cmd(run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    tiny = [o for o in TINY if not o.startswith("data.batch_size")]
    return [
        sys.executable,
        "train.py",
        f"hydra.run.dir={run_dir}",
        f"data.root={data_root}",
        *tiny,
        "data.batch_size=8",
        "data.images_per_class=16",
        "trainer.max_epochs=2",
        "callbacks.last_checkpoint.every_n_train_steps=4",
        *extra,
    ]


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 300) -> int:
    """Poll until the training process has written `path` (atomically); return its global step."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before writing {path}:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.05)
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_like_an_uninterrupted_run(shapes3, tmp_path):
    reference = tmp_path / "reference"
    _run(_train_cmd(reference, shapes3))

    killed = tmp_path / "killed"
    proc = _start(_train_cmd(killed, shapes3))
    step = _wait_for_checkpoint(proc, killed / "checkpoints" / "last.ckpt")
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert step % STEPS_PER_EPOCH != 0, "the checkpoint should be mid-epoch"
    assert not (killed / "metrics.json").exists()

    _run(_train_cmd(killed, shapes3, "ckpt_path=last"))
    final = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH, "resumed, not restarted: no extra steps"
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (killed, reference))
    assert got["epochs"] == want["epochs"] == 2
    # Tiny data and a reshuffled epoch after the resume: accuracy agrees only within this much.
    assert abs(got["test/acc"] - want["test/acc"]) <= 0.25, (got["test/acc"], want["test/acc"])
    assert sorted(p.name for p in (killed / "logs").iterdir()) == ["version_0", "version_1"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143_with_the_resume_command(shapes3, tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    cmd = _train_cmd(
        run_dir, shapes3, "callbacks.last_checkpoint.every_n_train_steps=3", "trainer.max_epochs=50"
    )
    proc = _start(cmd)
    first = _wait_for_checkpoint(proc, last)
    saved_at = last.stat().st_mtime_ns
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert last.stat().st_mtime_ns != saved_at, output[-3000:]
    assert state["global_step"] > first
    # Non-zero, as a shell reports a process ended by SIGTERM: a SageMaker job is not marked a success.
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("training interrupted by SIGTERM")]
    assert len(lines) == 1, output[-3000:]
    assert f"step {state['global_step']}" in lines[0]
    assert f"checkpoint {last}" in lines[0]
    resume = lines[0].split("resume with: ")[1]
    assert resume == f"python train.py resume={run_dir}", resume
    assert "Traceback" not in output
    assert not (run_dir / "metrics.json").exists(), "no test, no export after an interruption"
    assert not list(last.parent.glob(".*.tmp")), "no half-written checkpoint left behind"

    # The printed command resumes the run with its own overrides (here only to the end of the epoch it
    # stopped in: trainer.max_epochs may change on resume, and is recorded).
    words = shlex.split(resume)
    assert words[:2] == ["python", "train.py"], resume
    until = f"trainer.max_epochs={state['epoch'] + 1}"
    _run([sys.executable, *words[1:], until])
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == (state["epoch"] + 1) * STEPS_PER_EPOCH, "resumed, not restarted"
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == state["epoch"] + 1
    (resumed,) = (json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines())
    assert resumed["overrides"] == [until]
    assert "trainer.max_epochs=50" in json.loads((run_dir / "manifest.json").read_text())["overrides"]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130_with_the_resume_command(shapes3, tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    cmd = _train_cmd(run_dir, shapes3, "trainer.max_epochs=50")
    proc = _start(cmd)
    _wait_for_checkpoint(proc, last)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("training interrupted by SIGINT")]
    assert len(lines) == 1, output[-3000:]
    assert f"checkpoint {last}; resume with: python train.py " in lines[0]
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_checkpoint_every_minutes_saves_last_ckpt_by_the_clock_for_a_kill_without_warning(shapes3, tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    # No step or epoch-end last.ckpt: only the clock (every 30 ms here) writes it.
    cmd = _train_cmd(
        run_dir,
        shapes3,
        "callbacks.last_checkpoint=null",
        "checkpoint_every_minutes=0.0005",
        "trainer.max_epochs=50",
    )
    proc = _start(cmd)
    step = _wait_for_checkpoint(proc, last)
    proc.send_signal(signal.SIGKILL)  # no signal to save on: what survives is what the clock saved
    proc.wait(60)
    assert step > 0
    state = torch.load(last, map_location="cpu", weights_only=True)
    timed = [key for key in state["callbacks"] if "timedelta(microseconds=30000)" in key]
    assert timed, list(state["callbacks"])


def test_checkpoint_every_minutes_is_checked_and_on_by_default_inside_a_job_only(tmp_path):
    assert compose_config(tmp_path).checkpoint_every_minutes is None
    assert timed_checkpoints(compose_config(tmp_path), tmp_path) == []
    # Inside a job: where the job's last.ckpt goes (its synced checkpoint folder), every 10 minutes.
    job = compose_config(tmp_path, ["backend=sagemaker_job", "callbacks.last_checkpoint.dirpath=/synced"])
    assert job.checkpoint_every_minutes == 10
    (timed,) = timed_checkpoints(job, tmp_path)
    assert (timed.dirpath, timed._train_time_interval) == ("/synced", timedelta(minutes=10))
    with pytest.raises(ConfigValueError, match="checkpoint_every_minutes=0"):
        check_train_config(compose_config(tmp_path, ["checkpoint_every_minutes=0"]))
