"""An interrupted training run ends honestly: a non-zero exit status and one line saying where it stopped.

Lightning answers SIGTERM (a spot interruption, StopTrainingJob, `kill`) by saving the checkpoints that save
on exception and raising SIGTERMException, a SystemExit whose status is 0; Ctrl-C ends in sys.exit(1) with
no word of the checkpoint. A job would report success with no model. TrainingInterrupted replaces both:
still a SystemExit (every caller that let Lightning's through still does), with the shell's status for a
process ended by a signal, 128 + its number: 143 for SIGTERM, 130 for Ctrl-C (see docs/training.md).
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException


class TrainingInterrupted(SystemExit):
    """Training stopped by a signal; `code`: 128 + the signal's number; `line`: where, and how to resume."""

    def __init__(self, signal_name: str, code: int, line: str) -> None:
        super().__init__(code)
        self.signal_name = signal_name
        self.line = line


def interrupted_by(exc: BaseException, trainer: pl.Trainer) -> signal.Signals | None:
    """The signal that ended trainer.fit with `exc`, or None when `exc` is not an interruption."""
    if not trainer.interrupted:
        return None
    if isinstance(exc, SIGTERMException) or trainer.received_sigterm:
        return signal.SIGTERM
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt):
        return signal.SIGINT  # Lightning turns Ctrl-C into sys.exit(1) raised inside its handler
    return None


def saved_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The newest checkpoint file in the trainer's checkpoint folders (last.ckpt after an interruption)."""
    files = [
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint) and callback.dirpath
        for path in Path(callback.dirpath).glob("*.ckpt")
    ]
    return max(files, key=lambda path: path.stat().st_mtime_ns, default=None)


def resume_command(run_dir: Path) -> str:
    """The train.py command that resumes the run in `run_dir`: it restores the run's own recorded overrides
    (dogbreed.training.resume_record)."""
    return " ".join(shlex.quote(word) for word in ["python", "train.py", f"resume={run_dir}"])


def training_interrupted(trainer: pl.Trainer, sig: signal.Signals, run_dir: Path) -> TrainingInterrupted:
    """The exit for a run `sig` interrupted: where it stopped, the checkpoint kept, the command to resume."""
    where = f"training interrupted by {sig.name} at epoch {trainer.current_epoch}, step {trainer.global_step}"
    checkpoint = saved_checkpoint(trainer)
    if checkpoint is None:
        line = f"{where}; no checkpoint was saved, so a new run starts over"
    else:
        line = f"{where}; checkpoint {checkpoint}; resume with: {resume_command(run_dir)}"
    return TrainingInterrupted(sig.name, 128 + int(sig), line)
