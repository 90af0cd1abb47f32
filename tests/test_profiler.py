"""profiler=on: data loaders made slow on purpose make Dataloader, CPUBottleneck and IOBottleneck fire."""

from __future__ import annotations

import csv
import json
import mmap
import os
import time
from pathlib import Path

import lightning.pytorch as pl
import psutil
import pytest
import torch
from torch.utils.data import Dataset

from dogbreed.training.fit import fit
from tests.conftest import TINY, compose_config

# No checkpoint files (45 MB each, every epoch) and no export: these runs are about the diagnostics.
# ~callbacks drops the default callbacks group; debugger=on / profiler=on still add theirs.
QUICK = [
    *TINY,
    "export=false",
    "~callbacks",
    "trainer.enable_checkpointing=false",
    "trainer.limit_test_batches=1",
    "trainer.limit_val_batches=1",
]
CHUNK = 4 << 20  # O_DIRECT reads of 4 MiB: the thread spends them waiting on the device, not copying


class DiskReads:
    """Reads `path` with O_DIRECT, past the page cache as from a cold disk, chunk after chunk, so that the
    reading thread is blocked on the device (state D) for most of the time."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd, self.offset = path, -1, 0
        self.size = path.stat().st_size
        self.buffer = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs

    def read_for(self, seconds: float) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
        end, done = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            done += os.preadv(self.fd, [self.buffer], self.offset)
            self.offset = (self.offset + CHUNK) % self.size
        return done


class SlowDataset(Dataset):
    """Wraps a dataset so that each item costs `seconds` of: CPU work on every core ("cpu": heavy
    preprocessing, multi-threaded like torch's), waiting that is not I/O ("sleep": a remote service's
    latency), or reads from disk ("disk", with `disk` the reader)."""

    def __init__(self, inner: Dataset, seconds: float, kind: str, disk: DiskReads | None = None) -> None:
        self.inner, self.seconds, self.kind, self.disk = inner, seconds, kind, disk

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)  # the rest of the data module reads e.g. .skipped

    def __getitem__(self, index: int):
        if self.kind == "cpu":
            matrix = torch.rand(256, 256)
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:  # CPU-bound preprocessing on torch's intra-op threads
                matrix = torch.tanh(matrix @ matrix)
        elif self.kind == "sleep":
            time.sleep(self.seconds)  # the workload itself: a loader waiting on something, not on I/O
        else:
            assert self.disk.read_for(self.seconds) > 0
        return self.inner[index]


class SlowTrainingData(pl.Callback):
    """Set up by the test: the training split goes through SlowDataset before Lightning builds its loader."""

    def __init__(self, seconds: float, kind: str, disk: DiskReads | None = None) -> None:
        self.seconds, self.kind, self.disk = seconds, kind, disk

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datasets = trainer.datamodule.datasets
        if not isinstance(datasets["train"], SlowDataset):
            datasets["train"] = SlowDataset(datasets["train"], self.seconds, self.kind, self.disk)


def disk_file(folder: Path, megabytes: int = 64) -> Path:
    """A file of random bytes on the disk under `folder`, flushed, to be read back with O_DIRECT."""
    path = folder / "on-disk.bin"
    mounts = [p for p in psutil.disk_partitions(all=True) if str(folder).startswith(p.mountpoint)]
    fstype = max(mounts, key=lambda p: len(p.mountpoint)).fstype if mounts else ""
    if not hasattr(os, "O_DIRECT") or fstype in ("tmpfs", "ramfs"):
        pytest.skip(f"{folder} is not on a disk that O_DIRECT reads from (file system {fstype or '?'})")
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as e:
        pytest.skip(f"no O_DIRECT reads on {folder}: {e}")
    return path


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
        [
            "data.num_workers=0",
            "data.images_per_class=8",
            "trainer.max_epochs=2",
            "model.freeze=head",
            "rules.profiler.IOBottleneck.patience=0",
        ],
        SlowTrainingData(seconds=0.08, kind="sleep"),
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
    # ... but on a sleep, not on I/O: the loop waited, the job was not blocked on I/O
    io = rules["IOBottleneck"]
    assert io["status"] == "NoIssuesFound" and io["numbers"]["idle_samples"] > 0, io
    assert io["numbers"]["median_job_iowait_percent_while_idle"] < 50


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
        SlowTrainingData(seconds=0.5, kind="cpu"),
    )
    bottleneck = rules["CPUBottleneck"]
    assert bottleneck["status"] == "IssuesFound", bottleneck
    assert bottleneck["numbers"]["bottleneck_percent"] > 50
    assert rules["IOBottleneck"]["status"] == "NoIssuesFound", rules["IOBottleneck"]
    assert rules["Dataloader"]["status"] == "IssuesFound", rules["Dataloader"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])  # 0: the reads block the training loop; 1: a loader worker
def test_loader_reading_from_disk_fires_io_bottleneck(shapes3, tmp_path, workers):
    disk = DiskReads(disk_file(tmp_path))
    rules = profile(
        tmp_path / "run",
        shapes3,
        [
            f"data.num_workers={workers}",
            "data.images_per_class=8",
            "data.batch_size=8",
            "model.freeze=head",
            "trainer.max_epochs=1",
            "callbacks.profiler.interval_s=0.1",
            "rules.profiler.IOBottleneck.patience=0",  # SageMaker's 1000 samples would take 100 s here
        ],
        SlowTrainingData(seconds=0.25, kind="disk", disk=disk),
    )
    io = rules["IOBottleneck"]
    assert io["status"] == "IssuesFound", io
    assert io["parameters"]["io_threshold"] == 50  # SageMaker's default, unchanged
    assert io["numbers"]["bottleneck_percent"] > 50
    assert io["numbers"]["median_job_iowait_percent_while_idle"] > 50
    assert "storage" in io["recommendation"]
    with open(tmp_path / "run" / "profile" / "system.csv") as f:
        job_io = [float(r["job_iowait_percent"]) for r in csv.DictReader(f)]
    assert max(job_io) > 50
