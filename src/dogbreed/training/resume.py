"""Exact resume at epoch boundaries, and a rerun of a finished run that changes nothing.

A run killed after epoch k and resumed from its last checkpoint must train epoch k+1 exactly as the
uninterrupted run did. Lightning restores the weights, the optimiser, the schedulers and the loops; what
it cannot restore is randomness drawn from generators whose state was never saved: the shuffle order,
the augmentation and dropout draws, the loader workers' seeds. Here every one of them is derived from
(seed, epoch) alone, at the start of each epoch, so there is no state left to save:

- `EpochSeededLoader` is the training DataLoader with its own generator, reseeded from (seed, epoch)
  before each epoch's iterator is made. It draws the shuffle order and the workers' base seed. Its epoch
  is saved in the checkpoint as the datamodule's state (`DogBreedDataModule.state_dict`), which Lightning
  restores before it asks for the loader. (Lightning's own stateful-loader protocol restores loaders only
  when a checkpoint was written mid-epoch, not at an epoch's end.)
- `EpochSeeding` reseeds the global generators (torch, numpy, random) at each epoch start: those draw the
  augmentation in the main process and dropout.

With `data.num_workers > 0` the order and each worker's first seed are exact too, but persistent workers
carry their generators from one epoch to the next, so the augmentation of a resumed epoch differs from
the uninterrupted run's (what is exact is the shuffle order, the weights and the optimiser).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from dogbreed.config.errors import ConfigValueError
from dogbreed.data.sampling import epoch_seed
from dogbreed.model.checkpoints import CheckpointError, read_checkpoint
from dogbreed.tracking.run_record import METRICS_FILE, read_run_record

log = logging.getLogger(__name__)


class EpochSeeding(pl.Callback):
    """Reseed torch, numpy and random from (seed, epoch) when each training epoch starts."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = epoch_seed(self.seed, trainer.current_epoch)
        torch.manual_seed(value)
        np.random.seed(value)
        random.seed(value)


def checkpoint_file(ckpt_path: str | None, run_dir: str | Path) -> Path | None:
    """The file `ckpt_path` names ("last": the run's checkpoints/last.ckpt), or None."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        return Path(run_dir) / "checkpoints" / "last.ckpt"
    return Path(ckpt_path)


@dataclass(frozen=True)
class ResumeCheckpoint:
    path: Path
    contents: dict[str, Any]  # its tensors memory-mapped: only the loop counters are read here


def read_resume_checkpoint(ckpt_path: str | None, run_dir: str | Path) -> ResumeCheckpoint | None:
    """The checkpoint file `ckpt_path` names, read through the one loader; None when there is none here.

    fit() calls this before it writes anything of the run: a file the loader refuses stops the run with the
    run folder as it was. (Lightning reads the file again to resume, through the same loader. A URL, or a
    name Lightning resolves itself other than "last", is left to that read.)
    """
    path = checkpoint_file(ckpt_path, run_dir)
    if path is None or not path.is_file():
        return None
    try:
        return ResumeCheckpoint(path, read_checkpoint(path, mmap=True))
    except CheckpointError as exc:
        raise CheckpointError(f"ckpt_path={ckpt_path}: {exc}; or start fresh with ckpt_path=null") from None


def finished_run_metrics(
    checkpoint: ResumeCheckpoint | None, run_dir: str | Path, max_epochs: int | None
) -> dict | None:
    """The run's metrics.json when a resume (from `checkpoint`, None when the run kept none) finds a finished
    run in `run_dir` (its complete metrics.json written): there is nothing to train, and its record is kept
    as it is. None when there is something to resume (no finished run there).

    A finished run is never trained again in its own folder: asked for more epochs than it trained, this
    refuses and says how to train on in a new folder (dogbreed.training.resume_record)."""
    record = read_run_record(run_dir)
    if not record.finished:
        return None
    # "processed": epochs whose training and validation ran; the last epoch's checkpoint is written before
    # Lightning counts it "completed". No checkpoint: the finished run kept none (keep_checkpoints=false).
    contents = checkpoint.contents if checkpoint is not None else {}
    progress = contents.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    completed = progress.get("current", {}).get("processed", (record.metrics or {}).get("epochs", 0))
    if max_epochs is not None and max_epochs > completed:
        raise ConfigValueError(
            f"{run_dir} is a finished run ({completed} epochs): trainer.max_epochs={max_epochs} would write "
            f"over its record; train on in a new folder with: python train.py resume={run_dir} "
            f"hydra.run.dir=<new folder> trainer.max_epochs={max_epochs}"
        )
    log.warning(
        "%s is a finished run (%d epochs): nothing to resume; %s is kept as it is",
        run_dir,
        completed,
        Path(run_dir) / METRICS_FILE,
    )
    return record.metrics
