"""The ImageFolder a split is read with: a chosen set of classes, deterministic subsets, robust loading."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from dogbreed.data.images import BadImageError, check_readable, load_rgb
from dogbreed.data.layout import class_files


class BreedImageFolder(ImageFolder):
    """ImageFolder over a chosen set of classes, optionally `images_per_class` of each, robust to bad files.

    Unreadable files found by the header scan are left out and listed in `self.skipped` when
    `skip_bad=True`; otherwise the scan raises naming them. A file that passes the scan but fails
    to decode raises BadImageError naming it (or, with skip_bad, is replaced by the next sample).
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str],
        transform=None,
        images_per_class: int | None = None,
        seed: int = 0,
        skip_bad: bool = False,
        scan: bool = True,
        draft_size: int | None = None,
    ) -> None:
        self._wanted = list(classes)
        self.skip_bad = skip_bad
        super().__init__(
            str(root), transform=transform, loader=partial(load_rgb, draft_size=draft_size), allow_empty=True
        )
        if images_per_class is not None:
            rng = random.Random(seed)
            by_class: dict[int, list[tuple[str, int]]] = {}
            for sample in self.samples:
                by_class.setdefault(sample[1], []).append(sample)
            self.samples = sorted(
                s for group in by_class.values() for s in rng.sample(group, min(images_per_class, len(group)))
            )
        self.skipped: list[tuple[str, str]] = []
        if scan:
            self._drop_unreadable()
        self.targets = [target for _, target in self.samples]
        self.imgs = self.samples

    def make_dataset(  # type: ignore[override]
        self,
        directory: str,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file=None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        """ImageFolder's samples, read with `class_files` (links kept inside their class folder)."""
        valid = is_valid_file or (lambda path: has_file_allowed_extension(path, extensions or IMG_EXTENSIONS))
        samples = []
        for name in sorted(class_to_idx):
            class_dir = os.path.join(directory, name)
            if os.path.isdir(class_dir):
                samples += [(path, class_to_idx[name]) for path in class_files(class_dir) if valid(path)]
        return samples

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        # Index classes by the wanted list, not by what this split holds, so every split agrees.
        return self._wanted, {name: i for i, name in enumerate(self._wanted)}

    def _drop_unreadable(self) -> None:
        bad = [(path, reason) for path, _ in self.samples if (reason := check_readable(path))]
        if bad and not self.skip_bad:
            listing = "\n  - ".join(f"{path}: {reason}" for path, reason in bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise BadImageError(
                f"{len(bad)} unreadable image file(s) in {self.root}:\n  - {listing}{more}\n"
                "Remove them, or set data.on_bad_image=skip to leave them out and count them."
            )
        bad_paths = {path for path, _ in bad}
        self.samples = [s for s in self.samples if s[0] not in bad_paths]
        self.skipped = bad

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            try:
                return super().__getitem__((index + offset) % len(self.samples))
            except BadImageError as exc:
                if not self.skip_bad:
                    raise
                warnings.warn(f"skipping {exc}", stacklevel=2)
        raise BadImageError(f"no readable image left in {self.root}")
