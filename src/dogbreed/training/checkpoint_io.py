"""The trainer's checkpoint plugin: atomic writes, and Lightning's reads through the one loader.

Writes go to a temporary file renamed over the target when complete, so a run killed while saving keeps its
previous checkpoint intact. Reads (resume with ckpt_path, test/validate with the best checkpoint) go through
dogbreed.model.checkpoints.read_checkpoint, which refuses any file that is not plain data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from dogbreed.model.checkpoints import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's own torch.save writer, into a temporary file renamed over the target when complete;
    Lightning's reads through `read_checkpoint`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options=None
    ) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Any | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        # weights_only is not Lightning's to choose: left None it follows TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD,
        # and Lightning turns it off for a checkpoint given as an http(s) URL.
        return read_checkpoint(path, map_location)
