"""Files written whole or not at all: a process killed while writing leaves the previous version intact."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a hidden temporary file beside `path`, then rename it over `path`.

    The rename is atomic on one filesystem, so a reader (or a rerun after a kill) sees the old file or the
    new one, never half of one. A kill before the rename leaves only the hidden `.<name>.tmp` behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there when writing or renaming failed
    return path
