"""Checkpoint files: the one loader every reader of a checkpoint goes through.

A checkpoint is data: tensors, numbers, strings and containers of them. `read_checkpoint` unpickles with
`weights_only=True`, which builds only those, so a file that would run code when loaded (planted in a run
folder, in the bucket a spot job syncs, or in a downloaded model) is refused instead of executed. Its
readers: fit()'s resume and finished-run checks (dogbreed.training.resume), Lightning's own resume, test and
validate (through the trainer's checkpoint plugin, dogbreed.training.checkpoint_io), a model
folder's weights.pt (dogbreed.modeldir.reader) and `model.weights=<file>` (dogbreed.model.network).

No type is allow-listed: the checkpoints Lightning writes for this project (loops, callbacks, optimiser and
scheduler states, hyperparameters, the datamodule's epoch) hold plain values only. This module imports
torch alone: the inference container, which has no Lightning, loads weights.pt through it too.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from dogbreed.config.errors import UserError


class CheckpointError(UserError):
    """A checkpoint file that was refused (pickled objects) or cannot be read; nothing of it was used."""


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False) -> dict:
    """The dict saved in checkpoint `path` (a file, or a URL fsspec reads), unpickled with weights_only.

    `mmap`: map the tensors' storage instead of reading it (for callers that read only the counters).
    Raises CheckpointError naming the file when it holds anything but plain data, or is not a checkpoint.
    """
    name = str(path)
    if "://" in name and not name.startswith("file://"):
        from fsspec.core import url_to_fs  # torch's own dependency; Lightning reads URLs with it too

        fs, remote = url_to_fs(name)
        if not fs.exists(remote):
            raise CheckpointError(f"{name}: no such checkpoint file")
        with fs.open(remote, "rb") as f:
            return _unpickle(f, name, map_location, mmap=False)
    local = Path(name.removeprefix("file://"))
    if not local.is_file():
        raise CheckpointError(f"{name}: no such checkpoint file")
    # mmap needs torch's zip format; any other file is read whole, so that its refusal says why.
    return _unpickle(local, name, map_location, mmap=mmap and zipfile.is_zipfile(local))


def _unpickle(source: Path | IO[bytes], name: str, map_location: Any, mmap: bool) -> dict:
    try:
        checkpoint = torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except PermissionError as exc:
        raise CheckpointError(f"{name} cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # torch reports a damaged file as RuntimeError, EOFError, even KeyError
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in str(exc):  # a callable or class to import
            raise CheckpointError(
                f"{name} is refused: it holds pickled Python objects, not only tensors and plain values "
                f"({_detail(exc)}), and loading them could run code. Nothing of it was used: load only "
                "checkpoints written by this project's training"
            ) from None
        raise CheckpointError(
            f"{name} is not a readable checkpoint ({type(exc).__name__}: {_detail(exc)}): damaged, "
            "truncated or not written by torch.save"
        ) from None
    if not isinstance(checkpoint, dict):
        kind = type(checkpoint).__name__
        raise CheckpointError(f"{name} is not a checkpoint: it holds a {kind}, not a dict of tensors")
    return checkpoint


def _detail(exc: BaseException) -> str:
    """The line of torch's message that says what failed ("unsupported GLOBAL posix.system"), not its
    paragraph on weights_only."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or ["no detail"])[0].rstrip(".")
