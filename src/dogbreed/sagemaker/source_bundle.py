"""What a SageMaker job receives as source: train.py, conf/, src/ and a requirements.txt for the container."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from dogbreed.config.extras import EXTRAS

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


def export_requirements(onnx_cfg: Mapping[str, Any] | None) -> list[str]:
    """What the job's export step needs for the optimised artifact (onnx.enabled): ONNX export and INT8
    calibration (the onnx extra) and OpenVINO, so that the parity figures, and the runtime shipped in the
    model's archive, are those of a local run with every runtime installed."""
    if not (onnx_cfg or {}).get("enabled"):
        return []
    return [*EXTRAS["onnx"], *EXTRAS["openvino"]]


def project_root() -> Path:
    """The checkout whose train.py, conf/ and src/ a job runs; a package installed without one cannot ship."""
    if not (PROJECT_ROOT / "train.py").is_file() or not (PROJECT_ROOT / "conf").is_dir():
        raise FileNotFoundError(
            "backend=sagemaker ships this project's train.py, conf/ and src/ to the job: run it from a"
            " checkout of the project (pip install -e .), not from an installed package"
        )
    return PROJECT_ROOT


def stage_source(destination: Path, extra_requirements: Sequence[str] = ()) -> Path:
    """Copy what the job runs (train.py, conf/, src/) and a requirements.txt into `destination`;
    `extra_requirements` (e.g. a logger's package) are added to it."""
    project_root()
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    for name in SHIPPED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, destination / name)
    requirements = [*container_requirements(), *extra_requirements]
    (destination / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return destination
