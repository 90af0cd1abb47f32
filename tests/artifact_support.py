"""A Python that cannot import the runtimes: what an install without the extras looks like."""

from __future__ import annotations

from pathlib import Path

BLOCKED_RUNTIMES = ("openvino", "onnxruntime", "onnx")
# None in sys.modules is how Python marks a module as unimportable: `import openvino` raises
# ModuleNotFoundError and importlib.util.find_spec answers None, as when the package is not installed.
SITECUSTOMIZE = f"""import sys

for name in {BLOCKED_RUNTIMES!r}:
    sys.modules[name] = None
"""


def runtime_blocker(folder: Path) -> Path:
    """A folder holding a sitecustomize.py that blocks the runtimes: put it first on PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder
