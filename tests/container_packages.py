"""Packages of a container-like Python, without a network: which of this environment's distributions it sees,
and wheels of installed distributions for a local pip to install from.

A container-like Python (tests/sagemaker_replay.make_container_python) reaches this environment's packages
through one path entry. Pointed at a view of site-packages without some distributions (the ONNX runtimes,
say), it lacks them as the PyTorch containers do, and pip installs them into it for real: from wheels made
here of the very files installed in this environment (its version, its tags), in a folder pip is pointed
at by PIP_FIND_LINKS, with no index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sysconfig
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

# The distributions that run an ONNX graph or make one: absent from the PyTorch containers.
RUNTIME_DISTRIBUTIONS = ("onnx", "onnxruntime", "openvino")
# What a dist-info folder holds that the installer wrote, not the wheel.
INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def top_level_entries(name: str) -> set[str]:
    """The names in site-packages a distribution's files sit under (its packages, its dist-info...)."""
    files = metadata.distribution(name).files or []
    return {f.parts[0] for f in files if f.parts and f.parts[0] != ".."}


def site_packages_without(names: Iterable[str], where: Path) -> Path:
    """A folder of links to every entry of this environment's site-packages but those of `names`."""
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = set().union(*(top_level_entries(name) for name in names))
    where.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if entry.name not in hidden and not entry.name.endswith(".pth"):
            (where / entry.name).symlink_to(entry)
    return where


def _tags(wheel_metadata: str) -> str:
    """'cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64': a wheel file name's compressed tag set."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines() if line.startswith("Tag:")]
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    return "-".join(".".join(values) for values in parts)


def wheel_of_installed(name: str, destination: Path) -> Path:
    """The installed distribution `name` packed back into a wheel in `destination` (its RECORD rewritten)."""
    dist = metadata.distribution(name)
    info = next(f.parts[0] for f in dist.files or [] if f.parts[0].endswith(".dist-info"))
    normal = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    wheel_text = dist.read_text("WHEEL") or ""
    path = destination / f"{normal}-{dist.version}-{_tags(wheel_text)}.whl"
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        for file in sorted(dist.files or [], key=str):
            relative = file.as_posix()
            installer_file = file.parts[0] == info and file.name in INSTALLER_FILES
            if file.parts[0] == ".." or "__pycache__" in file.parts or installer_file:
                continue
            data = Path(dist.locate_file(file)).read_bytes()
            wheel.writestr(relative, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{relative},sha256={digest},{len(data)}")
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


def wheels_of_installed(names: Iterable[str], destination: Path) -> Path:
    """Wheels of the installed distributions `names`, in `destination` (a folder for PIP_FIND_LINKS)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        wheel_of_installed(name, destination)
    return destination


def installed_in(python: Path, distribution: str) -> bool:
    """Whether pip installed `distribution` into the container-like Python itself (not seen through)."""
    site = python.parent.parent / "lib"
    return any(site.glob(f"python3*/site-packages/{distribution}-*.dist-info"))


def no_index_environment(base: Path) -> dict[str, str]:
    """An endpoint under network isolation: the toolkit's paths under `base`, pip with no index at all."""
    return {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "SAGEMAKER_BASE_DIR": str(base),
        "PIP_CONFIG_FILE": os.devnull,  # none of this machine's pip settings (its find-links, its mirrors)
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # a closed port, should anything ask
        "PIP_FIND_LINKS": "",
    }


# setuptools 81 dropped pkg_resources, which the inference toolkit's model_server imports to name its config
# files (the PyTorch inference containers ship an older setuptools): the one function it calls, for a Python
# whose setuptools lacks it.
PKG_RESOURCES = """import importlib.util
import os


def resource_filename(package, resource):
    return os.path.join(os.path.dirname(importlib.util.find_spec(package).origin), resource.lstrip("/"))
"""


def install_model_requirements(python: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """What the SageMaker inference toolkit does before the model server starts: its own pip install of
    <SAGEMAKER_BASE_DIR>/model/code/requirements.txt, run by `python` (a container-like venv)."""
    probe = subprocess.run([str(python), "-c", "import pkg_resources"], env=environment, capture_output=True)
    if probe.returncode != 0:
        site = next(python.parent.parent.glob("lib/python3*/site-packages"))
        (site / "pkg_resources.py").write_text(PKG_RESOURCES)
    install = "from sagemaker_inference import model_server; model_server._install_requirements()"
    return subprocess.run(
        [str(python), "-c", install], env=environment, capture_output=True, text=True, timeout=900
    )
