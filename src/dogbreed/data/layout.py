"""The data folder's layout (train/ valid/ test/ of the same class folders): checked before anything is
built, every problem named at once, and a deterministic choice of classes. Imports nothing heavy, so a
SageMaker launch checks a local data folder without loading torchvision; the extensions that count as
images are torchvision's, imported only when a folder is really read."""

from __future__ import annotations

import os
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dogbreed.config.errors import UserError

SPLITS = ("train", "valid", "test")


class DataLayoutError(UserError, ValueError):
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


def class_name_problem(name: str) -> str | None:
    """Why a class folder's name cannot be a class name, or None. Class names are written into CSV
    reports, logs and model.json: a control or format character (a newline, a tab, a right-to-left
    override, a byte that is not UTF-8) or the `|` that tables separate columns with would break them."""
    bad = sorted({c for c in name if c == "|" or unicodedata.category(c).startswith("C")})
    if not bad:
        return None
    shown = ", ".join(repr(c) for c in bad)
    return f"class folder name {name!r} holds {shown}: rename the folder without control characters or |"


def _is_image_file(path: str) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

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
        problems += [f"{split_dir}: {why}" for name in counts if (why := class_name_problem(name))]
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
