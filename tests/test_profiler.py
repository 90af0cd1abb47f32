"""profiler=on: a data loader made slow on purpose makes Dataloader and CPUBottleneck fire."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import Dataset

from dogbreed.training import fit
from tests.conftest import TINY, compose_config

# No checkpoint files (45 MB each, every epoch) and no export: these runs are about the diagnostics.
# ~callbacks drops the default callbacks group; debugger=on / profiler=on still add theirs.
QUICK = [
    *TINY,
    "export=false",
    "~callbacks",
    "+trainer.enable_checkpointing=false",
    "trainer.limit_test_batches=1",
    "trainer.limit_val_batches=1",
]


class SlowDataset(Dataset):
    """Wraps a dataset so that each item costs `seconds` of CPU work on every core (busy: heavy
    preprocessing, multi-threaded like torch's) or of waiting (blocked I/O)."""

    def __init__(self, inner: Dataset, seconds: float, busy: bool) -> None:
        self.inner, self.seconds, self.busy = inner, seconds, busy

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)  # the rest of the data module reads e.g. .skipped

    def __getitem__(self, index: int):
        if self.busy:
            matrix = torch.rand(256, 256)
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:  # CPU-bound preprocessing on torch's intra-op threads
                matrix = torch.tanh(matrix @ matrix)
        else:
            time.sleep(self.seconds)  # a slow disk or network read
        return self.inner[index]


class SlowTrainingData(pl.Callback):
    """Set up by the test: the training split goes through SlowDataset before Lightning builds its loader."""

    def __init__(self, seconds: float, busy: bool) -> None:
        self.seconds, self.busy = seconds, busy

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datasets = trainer.datamodule.datasets
        if not isinstance(datasets["train"], SlowDataset):
            datasets["train"] = SlowDataset(datasets["train"], self.seconds, self.busy)


def profile(run_dir: Path, data: Path, overrides: list[str], slow: SlowTrainingData) -> dict[str, dict]:
    cfg = compose_config(run_dir, [*QUICK, f"data.root={data}", "profiler=on", *overrides])
    fit(cfg, extra_callbacks=[slow])
    summary = json.loads((run_dir / "rule_summary.json").read_text())
    return {o["rule"]: o for o in summary["rules"]}


@pytest.mark.slow
def test_blocking_loader_without_workers_fires_dataloader(shapes3, tmp_path):
    rules = profile(
        tmp_path,
        shapes3,
        ["data.num_workers=0", "data.images_per_class=8", "trainer.max_epochs=2", "model.freeze=head"],
        SlowTrainingData(seconds=0.08, busy=False),
    )
    dataloader = rules["Dataloader"]
    assert dataloader["status"] == "IssuesFound", dataloader
    assert dataloader["numbers"]["num_workers"] == 0
    assert dataloader["numbers"]["data_wait_percent"] > 25
    assert "num_workers" in dataloader["recommendation"]
    with open(tmp_path / "profile" / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == 4
    # 2 epochs of 24 items at 0.08 s each: the training loop waited at least that long for its data
    assert sum(float(s["data_wait_s"]) for s in steps) >= 2 * 24 * 0.08


@pytest.mark.slow
def test_cpu_heavy_preprocessing_fires_cpu_bottleneck_and_dataloader(shapes3, tmp_path):
    rules = profile(
        tmp_path,
        shapes3,
        [
            "data.num_workers=0",  # the preprocessing runs in the training process, on all cores
            "data.images_per_class=8",
            "data.batch_size=8",
            "model.freeze=head",  # little compute per step next to the preprocessing
            "trainer.max_epochs=1",
            "callbacks.profiler.interval_s=0.1",
            "rules.profiler.CPUBottleneck.patience=0",  # SageMaker's 1000 samples would take 100 s here
            "rules.profiler.IOBottleneck.patience=0",
        ],
        SlowTrainingData(seconds=0.5, busy=True),
    )
    bottleneck = rules["CPUBottleneck"]
    assert bottleneck["status"] == "IssuesFound", bottleneck
    assert bottleneck["numbers"]["bottleneck_percent"] > 50
    assert rules["IOBottleneck"]["status"] == "NoIssuesFound", rules["IOBottleneck"]
    assert rules["Dataloader"]["status"] == "IssuesFound", rules["Dataloader"]
