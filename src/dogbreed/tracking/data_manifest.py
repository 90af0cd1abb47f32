"""A fingerprint of the exact images a run used: per split, the class and image counts and a hash of the
images' relative paths and sizes (cheap on large data sets: no file is read)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def split_manifest(split_dir: str | Path, image_paths: Iterable[str | Path], num_classes: int) -> dict:
    """Counts and a sha256 over sorted `relative/path<TAB>size` lines of one split's images."""
    split_dir = Path(split_dir)
    lines = sorted(
        f"{Path(path).relative_to(split_dir).as_posix()}\t{os.stat(path).st_size}\n" for path in image_paths
    )
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    return {"classes": num_classes, "images": len(lines), "sha256": digest}


def data_manifest(splits: Mapping[str, Any], class_names: Sequence[str]) -> dict:
    """The manifest of `splits` (split name -> an ImageFolder-like dataset with `root` and `samples`).

    `sha256` combines the splits' hashes and the class list: one value that changes when any image, the
    choice of classes or the subset changes.
    """
    per_split = {
        name: split_manifest(dataset.root, (path for path, _ in dataset.samples), len(class_names))
        for name, dataset in splits.items()
    }
    combined = hashlib.sha256()
    for name in sorted(per_split):
        combined.update(f"{name}\t{per_split[name]['sha256']}\n".encode())
    combined.update("\n".join(class_names).encode())
    return {"sha256": combined.hexdigest(), "num_classes": len(class_names), "splits": per_split}
