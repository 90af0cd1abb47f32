"""manifest.json: what a run was made of (code version, command, libraries, machine, data), written to the
run directory and embedded in the exported model's model.json."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import dogbreed
from dogbreed.config.secrets import mask_secrets
from dogbreed.tracking.data_manifest import data_manifest
from dogbreed.tracking.git_state import git_state
from dogbreed.tracking.sagemaker_job import running_job

FORMAT_VERSION = 1
PACKAGES = ("dogbreed", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "numpy", "pillow")
OPTIONAL_PACKAGES = ("mlflow-skinny", "mlflow", "optuna", "sagemaker-training")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES + OPTIONAL_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in PACKAGES:
                versions[name] = None  # a required one missing is worth seeing; optional ones are left out
    import torch

    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return versions


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "os": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
    }


def hydra_overrides() -> list[str]:
    """The command line's Hydra overrides as typed (`x=${oc.env:NAME}` stays a reference) when running
    under @hydra.main, else []. Iterating Hydra's list itself would resolve the interpolations in them."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return []
    typed = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    return [str(o) for o in typed] if isinstance(typed, list) else []


def source_dir() -> Path:
    """The folder of the dogbreed package that runs (in an editable install: inside the checkout)."""
    return Path(dogbreed.__file__).resolve().parent


def build_manifest(
    *,
    splits: Mapping[str, Any],
    class_names: Sequence[str],
    overrides: Sequence[str] = (),
    argv: Sequence[str] | None = None,
    code_dir: str | Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Where a run came from, credentials masked; `splits` are the datasets it trains, validates and tests
    on. It is written as manifest.json and embedded in model.json, so what it holds leaves the machine."""
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(code_dir or source_dir(), environ),
        "command_line": list(sys.argv if argv is None else argv),
        "overrides": list(overrides),
        "versions": package_versions(),
        "machine": machine(),
        "data": data_manifest(splits, class_names),
    }
    job = running_job(environ)
    if job:
        manifest["sagemaker_job"] = job
    return mask_secrets(manifest)
