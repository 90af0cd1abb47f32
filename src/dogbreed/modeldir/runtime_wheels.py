"""The serving runtime's wheels, for model.tar.gz's code/wheels/: an endpoint installs them with pip's
`--no-index`, so an optimised engine starts without a package index (network isolation, no PyPI route).

The wheels are fetched by `pip download` for the endpoint's Python (PyTorch inference containers run
CPython on x86_64 Linux with glibc 2.35) through this machine's pip configuration (its index, or
PIP_FIND_LINKS/PIP_NO_INDEX where there is none), never for the Python that packs. The runtime is pinned to
the version installed here, the one the parity figures in model.json were measured with, where there is
one. What the inference container already has (numpy, torch, Pillow, ...) is left out: pip finds it
installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from dogbreed.config.extras import requirement_name, requirement_of

WHEELS_DIR = "wheels"
# manylinux tags a glibc 2.35 x86_64 system installs (manylinux2014 is manylinux_2_17's older name).
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)))
# In the PyTorch inference containers already: never shipped (a reinstall of torch breaks its CUDA build).
CONTAINER_HAS = {"numpy", "pillow", "torch", "torchvision", "setuptools", "pip", "wheel"}
DOWNLOAD_TIMEOUT_S = 900


class WheelsUnavailable(RuntimeError):
    """pip could not fetch the runtime's wheels for that Python; the message says why."""


def this_python() -> str:
    """The running interpreter's version as pip's --python-version takes it, e.g. '3.12'."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def python_of_py_version(py_version: str) -> str:
    """A SageMaker image's py_version ('py312') as pip's --python-version ('3.12')."""
    digits = re.fullmatch(r"py(\d)(\d+)", py_version)
    if not digits:
        raise ValueError(f"py_version {py_version!r} is not of the form py312")
    return f"{digits.group(1)}.{digits.group(2)}"


def runtime_requirement(module: str) -> str:
    """The runtime pinned to the version installed here (the one parity was checked with), else its
    extra's requirement (e.g. 'openvino>=2024.4')."""
    try:
        return f"{requirement_name(module)}=={metadata.version(module)}"
    except metadata.PackageNotFoundError:
        return requirement_of(module)


def download_wheels(requirement: str, destination: Path, python_version: str) -> list[Path]:
    """The wheels `requirement` needs on CPython `python_version` x86_64 Linux, less what the inference
    container has, into `destination` (created); WheelsUnavailable when pip cannot fetch them."""
    with tempfile.TemporaryDirectory(prefix="dogbreed-wheels-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
        command += ["--implementation", "cp", "--python-version", python_version, "--dest", tmp]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        try:
            done = subprocess.run(
                [*command, requirement], capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise WheelsUnavailable(f"pip download {requirement} took over {DOWNLOAD_TIMEOUT_S} s") from None
        if done.returncode != 0:
            why = " ".join((done.stderr.strip().splitlines() or ["no message"])[-1].split())
            raise WheelsUnavailable(f"pip download {requirement} for Python {python_version} failed: {why}")
        destination.mkdir(parents=True, exist_ok=True)
        kept = []
        for wheel in sorted(Path(tmp).glob("*.whl")):
            if requirement_name(wheel.name.split("-")[0]) not in CONTAINER_HAS:
                kept.append(Path(shutil.move(wheel, destination / wheel.name)))
    return kept
