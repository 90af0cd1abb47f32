"""The optional extras and their pins: the one table the code reads. pyproject.toml's
[project.optional-dependencies] says the same (tests/test_extras.py keeps the two equal), so a message
naming an extra, the runtimes' install hint and the requirements shipped in SageMaker's model.tar.gz all
agree with what `pip install 'dogbreed[<extra>]'` installs."""

from __future__ import annotations

import re

# extra -> its requirements, as in pyproject.toml (dev, the developers' set, is only there).
EXTRAS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard>=2.14",),
    "profiling": ("psutil>=5.9", "nvidia-ml-py>=12"),
    "tune": ("optuna>=4.2,<6", "optuna-integration>=4.2,<6", "pandas>=2", "psycopg2-binary>=2.9"),
    "sagemaker": ("sagemaker>=2.257,<3",),
    "smdebug": ("smdebug>=1.0.34", "numpy<2.3", "protobuf==3.20.3", "requests", "pandas", "psutil"),
    "mlflow": ("mlflow-skinny>=3.1,<4", "sqlalchemy>=2", "alembic>=1.13", "sagemaker-mlflow>=0.1"),
    "serve": ("fastapi>=0.110", "uvicorn>=0.29"),
    "onnx": ("onnx>=1.16", "onnxruntime>=1.18"),
    "openvino": ("openvino>=2024.4",),
}

# Top-level modules the code imports from an extra -> the extra that installs them.
MODULE_EXTRAS: dict[str, str] = {
    "optuna": "tune",
    "optuna_integration": "tune",
    "pandas": "tune",
    "fastapi": "serve",
    "uvicorn": "serve",
    "tensorboard": "tensorboard",
    "psutil": "profiling",
    "sagemaker": "sagemaker",
    "smdebug": "smdebug",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "openvino": "openvino",
}


def requirement_name(requirement: str) -> str:
    """'onnxruntime>=1.18' -> 'onnxruntime' (the distribution's name, normalised as pip compares them)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""


def requirement_of(module: str) -> str:
    """The pinned requirement that installs `module` (one of MODULE_EXTRAS), e.g. 'openvino>=2024.4'."""
    wanted = requirement_name(module)
    for requirement in EXTRAS[MODULE_EXTRAS[module]]:
        if requirement_name(requirement) == wanted:
            return requirement
    raise KeyError(f"{module}: no requirement of that name in the {MODULE_EXTRAS[module]} extra")
