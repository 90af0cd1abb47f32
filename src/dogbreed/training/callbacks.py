"""Callbacks of our own: plain `name=value` metric lines that a log regex (SageMaker's) can read, and the
checkpoint by time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from dogbreed.training.metric_lines import epoch_metrics, format_metric_lines


class MetricLinePrinter(pl.Callback):
    """Print each epoch's validation metrics and the test metrics as `name=value` lines."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, once the epoch-level train metrics are aggregated.
        if not trainer.is_global_zero:
            return
        metrics = epoch_metrics(trainer.callback_metrics)
        print(f"epoch={trainer.current_epoch}\n{format_metric_lines(metrics)}", flush=True)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            print(format_metric_lines(metrics), flush=True)


def timed_checkpoints(cfg: Any, run_dir: Path) -> list[pl.Callback]:
    """cfg.checkpoint_every_minutes: Lightning's ModelCheckpoint refreshing last.ckpt by the clock, so a run
    killed without warning (no SIGTERM to save on) resumes from minutes ago, not from its last epoch.

    It writes where the last_checkpoint callback does (a SageMaker job moves that to its synced folder)."""
    every_minutes = cfg.get("checkpoint_every_minutes")
    if every_minutes is None:
        return []
    last = (cfg.get("callbacks") or {}).get("last_checkpoint") or {}
    dirpath = last.get("dirpath") or run_dir / "checkpoints"
    interval = timedelta(minutes=float(every_minutes))
    # Both write last.ckpt, the file a restart resumes: with Lightning's version counter each would keep a
    # file of its own (last-v1.ckpt) and a restart would resume the epoch's, not the clock's.
    return [
        ModelCheckpoint(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            train_time_interval=interval,
            enable_version_counter=False,
        )
    ]
