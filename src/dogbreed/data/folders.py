"""ImageFolder splits: check the layout before training, pick deterministic subsets, load robustly."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from dogbreed.data import SPLITS
from dogbreed.data.images import BadImageError, check_readable, load_rgb


class DataLayoutError(ValueError):
    """The data folder is not laid out as train/ valid/ test/ with the same class folders."""


@dataclass(frozen=True)
class Layout:
    root: Path
    classes: list[str]  # folder names, in ImageFolder's (sorted) order


def class_files(class_dir: str | Path) -> list[str]:
    """Every file under a class folder, in ImageFolder's order, following links only within the folder.

    A linked folder that leads out of the class folder (`loop -> ..`) or back into a folder already
    scanned would count other classes' images, or the same ones again, as this class: it is refused,
    named, instead of silently multiplying the data."""
    top = Path(class_dir).resolve()
    seen: dict[Path, str] = {}
    walked = []
    for root, _, names in os.walk(class_dir, followlinks=True):
        real = Path(root).resolve()
        if not real.is_relative_to(top):
            raise DataLayoutError(
                f"{root} links to {real}, outside its class folder {class_dir}: its images would be "
                "labelled as this class (a link to a parent folder loops). Remove the link or copy the files."
            )
        if real in seen:
            raise DataLayoutError(
                f"{root} links to {real}, already read as {seen[real]}: its images would count twice. "
                "Remove the link."
            )
        seen[real] = root
        walked.append((root, names))
    return [os.path.join(root, name) for root, names in sorted(walked) for name in sorted(names)]


def _is_image_file(path: str) -> bool:
    return has_file_allowed_extension(path, IMG_EXTENSIONS) and os.path.isfile(path)


def _class_dirs(split_dir: Path) -> dict[str, int]:
    """Class folder name -> number of image files in it (read as training reads them)."""
    return {
        d.name: sum(1 for f in class_files(d) if _is_image_file(f))
        for d in sorted(split_dir.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def inspect_layout(root: str | Path, splits: Sequence[str] = SPLITS) -> Layout:
    """Check every split at once and raise one DataLayoutError listing every problem found."""
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(
            f"data folder {root} does not exist. Point data.root at a folder holding "
            f"{'/ '.join(splits)}/, add data.download=true to fetch the dog-breed data set, "
            "or run `python train.py experiment=smoke` for the embedded data set."
        )
    problems: list[str] = []
    per_split: dict[str, dict[str, int]] = {}
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            problems.append(f"missing split folder {split_dir}")
            continue
        per_split[split] = counts = _class_dirs(split_dir)
        if not counts:
            problems.append(f"split folder {split_dir} has no class folders")
        problems += [f"empty class folder {split_dir / name}" for name, n in counts.items() if n == 0]
    if per_split:
        reference_split, reference = next(iter(per_split.items()))
        for split, counts in per_split.items():
            missing = sorted(set(reference) - set(counts))
            extra = sorted(set(counts) - set(reference))
            if missing:
                problems.append(f"classes in {reference_split}/ but not in {split}/: {', '.join(missing)}")
            if extra:
                problems.append(f"classes in {split}/ but not in {reference_split}/: {', '.join(extra)}")
    if problems:
        raise DataLayoutError(f"data folder {root} is not usable:\n  - " + "\n  - ".join(problems))
    return Layout(root=root, classes=sorted(per_split[splits[0]]))


def choose_classes(classes: Sequence[str], num_classes: int | None, seed: int) -> list[str]:
    """A seeded, deterministic choice of `num_classes` class folders (all when None)."""
    if num_classes is None or num_classes >= len(classes):
        return list(classes)
    return sorted(random.Random(seed).sample(list(classes), num_classes))


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
