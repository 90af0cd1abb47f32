"""End to end: train.py as a user runs it, fit() on unseen data, resume from a checkpoint."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.config.errors import ConfigValueError
from dogbreed.training.fit import fit
from dogbreed.training.metric_lines import METRIC_NAMES
from tests.conftest import ROOT, TINY, compose_config

METRIC_LINE = re.compile(r"^(?P<name>(?:train|val|test)/\w+)=(?P<value>[0-9.]+)$", re.M)


@pytest.mark.slow
def test_train_py_smoke_run_leaves_a_complete_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "experiment=smoke",
            f"hydra.run.dir={run_dir}",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            "data.images_per_class=16",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert math.isfinite(metrics[name]) and metrics[name] >= 0, name
    printed = {m["name"]: float(m["value"]) for m in METRIC_LINE.finditer(result.stdout)}
    assert set(printed) <= set(METRIC_NAMES)
    assert printed["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert result.stdout.count("val/acc=") >= 3  # each epoch, then the final summary
    # Each line once: Lightning's lines go through Hydra's log handler only, not also through its own.
    output = result.stdout + result.stderr
    assert output.count("GPU available:") == 1, output[-3000:]
    lines = [line for line in output.splitlines() if line.strip()]
    assert not [a for a, b in zip(lines, lines[1:], strict=False) if a == b], output[-3000:]

    assert (run_dir / "model" / "weights.pt").is_file() and (run_dir / "model" / "model.json").is_file()
    # SageMaker's model.tar.gz layout: the entry point and the package it imports come with the model.
    assert (run_dir / "model" / "code" / "inference.py").is_file()
    assert (run_dir / "model" / "code" / "dogbreed" / "serving" / "handler.py").is_file()
    # A finished smoke run keeps its model, not its checkpoints (keep_checkpoints=false): under 100 MB.
    assert not (run_dir / "checkpoints").exists()
    assert not (run_dir / "model" / "model.int8.onnx").exists()
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert size < 100e6, f"{size / 1e6:.0f} MB"
    assert (run_dir / "config.yaml").read_text().count("resnet18") >= 1
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    with open(run_dir / "logs" / "version_0" / "metrics.csv") as f:
        assert any(row.get("val/acc") for row in csv.DictReader(f))
    for name in ("per_class_accuracy.csv", "confused_pairs.csv", "confusion_matrix.png"):
        assert (run_dir / "evaluation" / name).stat().st_size > 0


@pytest.mark.slow
def test_fit_learns_an_unseen_dataset_with_another_class_count(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["num_classes"] == 3
    assert metrics["monitor"] == "val/loss" and metrics["best_score"] <= metrics["val/loss"] + 1e-6
    assert metrics["test/acc"] >= 0.75, metrics  # chance is 0.33
    with open(trained_run / "evaluation" / "per_class_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == metrics_classes(trained_run)
    assert sum(int(r["support"]) for r in rows) == 36


@pytest.mark.slow
def test_a_finished_run_trains_on_from_its_last_checkpoint_in_a_new_folder(shapes3, tmp_path):
    overrides = [*TINY, f"data.root={shapes3}", "data.images_per_class=8"]
    first_dir, more_dir = tmp_path / "first", tmp_path / "more"
    first = fit(compose_config(first_dir, [*overrides, "trainer.max_epochs=1"]))
    assert first["epochs"] == 1
    last = first_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    record = {p.name: p.read_bytes() for p in first_dir.glob("*.*") if p.is_file()}

    # In its own folder a finished run is never trained again: its record would be written over.
    with pytest.raises(ConfigValueError, match=r"is a finished run \(1 epochs\).*hydra.run.dir=<new folder>"):
        fit(compose_config(first_dir, [*overrides, "trainer.max_epochs=3", "ckpt_path=last"]))
    assert {p.name: p.read_bytes() for p in first_dir.glob("*.*") if p.is_file()} == record

    resumed = fit(compose_config(more_dir, [*overrides, "trainer.max_epochs=3", f"ckpt_path={last}"]))
    assert resumed["epochs"] == 3
    with open(more_dir / "logs" / "version_0" / "metrics.csv") as f:
        logged = sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/loss")})
    assert logged == [1, 2], "epoch 0 was trained in the first folder"

    import torch

    state = torch.load(more_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["global_step"] == 3 * 2  # 24 train images / batch 16 = 2 steps


def test_missing_data_folder_fails_before_training_with_the_fixes(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(ValueError, match=r"nowhere does not exist.*data.download=true.*experiment=smoke"):
        fit(cfg)
    assert not (tmp_path / "checkpoints").exists()


def metrics_classes(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "model" / "model.json").read_text())["class_names"]


def test_dataset_path_in_run_is_the_one_given(trained_run, shapes3):
    config = (Path(trained_run) / "config.yaml").read_text()
    assert str(shapes3) in config


def test_warmup_then_cosine_learning_rate(shapes3, tmp_path):
    import lightning.pytorch as pl

    class RecordLearningRate(pl.Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    recorder = RecordLearningRate()
    overrides = [*TINY, f"data.root={shapes3}", "data.images_per_class=16", "trainer.max_epochs=4"]
    overrides += ["model.lr=0.01", "model.scheduler=cosine", "model.warmup_epochs=1", "export=false"]
    fit(compose_config(tmp_path, overrides), extra_callbacks=[recorder])
    rates = recorder.rates  # 48 images / batch 16 = 3 steps an epoch, 12 in all, 3 of warm-up
    assert len(rates) == 12
    assert rates[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])
    assert rates[3] == pytest.approx(0.01) and rates[-1] < 0.001
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False)), "cosine decays monotonically"


def test_unknown_scheduler_is_named(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "model.scheduler=linear"])
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    with pytest.raises(InstantiationException, match="model.scheduler=linear is not one of"):
        instantiate(cfg.model, num_classes=3)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes_keeps_one_run_directory(shapes3, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "ddp-run"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            f"hydra.run.dir={run_dir}",
            f"data.root={shapes3}",
            *TINY,
            "data.images_per_class=8",
            "trainer.max_epochs=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp-run"], "child processes must not create run dirs"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and (run_dir / "model" / "weights.pt").is_file()
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    assert "All distributed processes registered. Starting with 2 processes" in result.stdout + result.stderr
