"""The exported model directory as SageMaker's model.tar.gz: code/ beside the weights, and the archive.

SageMaker's PyTorch inference container extracts model.tar.gz to /opt/ml/model, puts code/ on the path,
pip-installs code/requirements.txt and imports code/inference.py. dogbreed is not on PyPI, so code/ carries
the modules of the package that inference imports (dogbreed.serving.handler and what it imports, found by
reading their imports), nothing of training, tuning or SageMaker jobs; torch and torchvision come with the
container and are never reinstalled. Training uses this module without importing any serving code.
A model holding the optimised inference artifact also lists the runtime that `engine=auto` runs it with
(OpenVINO, else ONNX Runtime). Packed for an endpoint (a Python version given), code/wheels/ holds that
runtime's wheels and requirements.txt installs them with `--no-index`: the container starts with the
optimised engine without reaching a package index, under network isolation too. Where the wheels cannot be
fetched the runtime is left out (one log line) and the endpoint serves torch, unless its image has it.

    python -m dogbreed.modeldir.archive runs/train/<run>/model [--out model.tar.gz] [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import ast
import logging
import shutil
import tarfile
import tempfile
from pathlib import Path

import dogbreed
from dogbreed.config.extras import requirement_of
from dogbreed.files import remove_staging_litter, replace_dir, staging_dir
from dogbreed.modeldir.format import ARTIFACTS_KEY, model_dir_problem
from dogbreed.modeldir.reader import read_model_description
from dogbreed.modeldir.runtime_wheels import (
    WHEELS_DIR,
    WheelsUnavailable,
    download_wheels,
    python_of_py_version,
    runtime_requirement,
)
from dogbreed.modeldir.runtimes import RUNTIME_MODULES, RUNTIMES

log = logging.getLogger(__name__)

CODE_DIR = "code"
ENTRY_POINT = "inference.py"
# serve/inference.py holds the same text (a test keeps them equal); it is the SDK's entry_point.
ENTRY_POINT_SOURCE = '''"""SageMaker inference entry point (shipped as code/inference.py inside model.tar.gz).

The PyTorch inference container puts code/ on sys.path; code/dogbreed holds the modules of this project's
package that inference imports (copied by `dogbreed.modeldir.archive`), so the container needs no extra pip
install of the project.
"""

from dogbreed.serving.handler import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
'''
REQUIREMENTS = """\
# Installed by the SageMaker PyTorch inference container before it imports code/inference.py.
# torch and torchvision come with the container: never list them here (a reinstall breaks its CUDA build).
# Pillow and numpy are in the container too (pip finds them satisfied); a file with no requirement at all
# makes some pip versions fail, which stops the endpoint.
Pillow
numpy
"""


# pip reads options in a requirements file as on its command line, and --find-links relative to the file.
OFFLINE = f"""\
# The runtime's wheels ship in code/{WHEELS_DIR}/: installed without any package index (network isolation).
--no-index
--find-links {WHEELS_DIR}
"""
# The endpoint's Python when none is named: the PyTorch inference containers' (conf/deploy.yaml's py_version).
ENDPOINT_PYTHON = python_of_py_version("py312")


def servable_runtime(model_dir: Path) -> str | None:
    """The first runtime (OpenVINO, else ONNX Runtime) that may serve a version of the optimised artifact
    that model.json records as kept: checked with it and not refused by it; None without one."""
    config = read_model_description(model_dir).config
    servable = {
        runtime
        for entry in (config.get(ARTIFACTS_KEY) or {}).values()
        if entry.get("file")
        for runtime in entry.get("parity") or {}
        if runtime not in (entry.get("refused") or {})
    }
    return next((runtime for runtime in RUNTIMES if runtime in servable), None)  # engine=auto's order


def requirements_for(model_dir: Path, code: Path | None = None, python_version: str | None = None) -> str:
    """REQUIREMENTS plus the runtime that serves the model's optimised artifact (servable_runtime). With
    `python_version` its wheels for that Python go into `code`/wheels/ and are installed offline; without,
    it is listed by name (installed from an index)."""
    runtime = servable_runtime(model_dir)
    if runtime is None:
        return REQUIREMENTS
    module = RUNTIME_MODULES[runtime]
    if python_version is None or code is None:
        return REQUIREMENTS + requirement_of(module) + "\n"
    requirement = runtime_requirement(module)
    try:
        download_wheels(requirement, code / WHEELS_DIR, python_version)
    except WheelsUnavailable as exc:
        log.warning(
            "%s not shipped in code/%s (%s): the endpoint serves torch unless its image has %s",
            requirement,
            WHEELS_DIR,
            exc,
            runtime,
        )
        shutil.rmtree(code / WHEELS_DIR, ignore_errors=True)
        return REQUIREMENTS
    return REQUIREMENTS + OFFLINE + requirement + "\n"


def add_inference_code(
    model_dir: str | Path, code: Path | None = None, python_version: str | None = None
) -> Path:
    """Write <model_dir>/code/{inference.py, requirements.txt, dogbreed/} (replacing an older code/), or
    the same into `code` when given (packing leaves the model directory as it is); with `python_version`
    (e.g. '3.12', the endpoint's), the serving runtime's wheels for it in code/wheels/."""
    model_dir = Path(model_dir)
    why = model_dir_problem(model_dir)
    if why:
        raise FileNotFoundError(f"{model_dir} {why}: it is not an exported model")
    code = code or model_dir / CODE_DIR
    # Built beside code/ and swapped in whole: a kill midway never leaves an empty or partial code/.
    remove_staging_litter(code)
    staged = staging_dir(code)
    try:
        copy_package_modules(staged)
        (staged / ENTRY_POINT).write_text(ENTRY_POINT_SOURCE)
        (staged / "requirements.txt").write_text(requirements_for(model_dir, staged, python_version))
        replace_dir(staged, code)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return code


# Where inference starts; everything of the package it imports (at module level or inside functions) ships.
INFERENCE_ROOT = "serving/handler.py"


def copy_package_modules(folder: Path, root: str = INFERENCE_ROOT) -> Path:
    """Copy the package's modules that `root` (a file of the package) imports into <folder>/dogbreed, which
    it returns: the code a model folder or an MLflow model carries so that it loads without the project."""
    package = Path(dogbreed.__file__).resolve().parent
    for relative in imported_modules(package, root):
        target = folder / "dogbreed" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / relative, target)
    return folder / "dogbreed"


def imported_modules(package: Path, root: str = INFERENCE_ROOT) -> list[Path]:
    """The package's files that `root` imports, directly or through each other, with the packages'
    __init__.py files: relative to `package` (the dogbreed folder), sorted. Imports inside functions
    count too: whatever `root` may import at some point."""
    found: set[Path] = set()
    pending = [Path(root)]
    while pending:
        relative = pending.pop()
        if relative in found or not (package / relative).is_file():
            continue
        found.add(relative)
        for parent in relative.parents:  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            if (package / parent / "__init__.py").is_file():
                pending.append(parent / "__init__.py")
        tree = ast.parse((package / relative).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "dogbreed":
                    continue
                if len(parts) == 1:  # `import dogbreed`: the package's own __init__.py
                    pending.append(Path("__init__.py"))
                    continue
                path = Path(*parts[1:])
                for candidate in (path.with_suffix(".py"), path / "__init__.py"):
                    if (package / candidate).is_file():
                        pending.append(candidate)
    return sorted(found)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Same content, same archive bytes: no owner names or timestamps of this machine.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def pack_model(
    model_dir: str | Path, out: str | Path | None = None, python_version: str | None = None
) -> Path:
    """model.tar.gz with weights.pt, model.json and code/ at the archive root (SageMaker's layout).

    Written next to the model directory by default, never inside it. `python_version`: the endpoint's
    Python, for which the serving runtime's wheels are shipped (add_inference_code).
    """
    model_dir = Path(model_dir).resolve()
    out = Path(out) if out else model_dir.parent / "model.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dogbreed-code-") as tmp_dir:
        # This version's code/ goes into the archive; the model directory itself is left untouched.
        code = add_inference_code(model_dir, Path(tmp_dir) / CODE_DIR, python_version)
        files = [
            (p, p.relative_to(model_dir).as_posix())
            for p in model_dir.rglob("*")
            if p.is_file() and p.resolve() != out.resolve() and p.relative_to(model_dir).parts[0] != CODE_DIR
        ]
        files += [(p, f"{CODE_DIR}/{p.relative_to(code).as_posix()}") for p in code.rglob("*") if p.is_file()]
        tmp = out.with_name(out.name + ".tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            for path, name in sorted(files, key=lambda f: f[1]):
                tar.add(path, arcname=name, filter=_normalised)
        tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Add code/ to an exported model and pack model.tar.gz")
    parser.add_argument("model_dir")
    parser.add_argument("--out", help="archive path (default: model.tar.gz next to model_dir)")
    parser.add_argument(
        "--python-version",
        default=ENDPOINT_PYTHON,
        help=f"the endpoint's Python, for the serving runtime's wheels (default {ENDPOINT_PYTHON})",
    )
    parser.add_argument("--no-wheels", action="store_true", help="list the runtime instead (needs an index)")
    args = parser.parse_args(argv)
    print(pack_model(args.model_dir, args.out, None if args.no_wheels else args.python_version))


if __name__ == "__main__":
    main()
