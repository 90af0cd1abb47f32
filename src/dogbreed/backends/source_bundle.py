"""What a SageMaker job receives as source: train.py, conf/, src/ and a requirements.txt for the container."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# What the job needs from the project; the container already has torch and torchvision (never reinstalled).
SHIPPED = ("train.py", "tune.py", "conf", "src")
CONTAINER_HAS = {"torch", "torchvision"}


def container_requirements() -> list[str]:
    """This project's runtime requirements minus what the PyTorch container already has."""
    keep = []
    for requirement in metadata.requires("dogbreed") or []:
        if "extra ==" in requirement:
            continue
        name = requirement.split(";")[0].strip()
        bare = name.split("[")[0]
        for sep in "<>=!~ ":
            bare = bare.split(sep)[0]
        if bare.lower() not in CONTAINER_HAS:
            keep.append(name)
    return keep


def stage_source(destination: Path) -> Path:
    """Copy what the job runs (train.py, conf/, src/) and a requirements.txt into `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    for name in SHIPPED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, destination / name)
    (destination / "requirements.txt").write_text("\n".join(container_requirements()) + "\n")
    return destination
