"""The exported model as SageMaker's model.tar.gz: training builds it without importing serving, and code/
ships only what inference imports, which is enough to answer a request with the rest of the project absent."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import dogbreed
from dogbreed.modeldir.archive import CODE_DIR, imported_modules, pack_model
from tests.conftest import ROOT
from tests.sagemaker_replay import make_container_python, without_pythonpath

# What the PyTorch inference container lacks: the training, tuning and serving-app stacks.
NOT_IN_THE_INFERENCE_CONTAINER = ("lightning", "hydra", "omegaconf", "optuna", "fastapi", "uvicorn", "mlflow")


def test_nothing_a_training_run_may_import_is_serving_code():
    # Read statically, so imports inside functions count too: what training/fit.py imports, and what the
    # train config instantiates (model, data module, callbacks, debugger, profiler), and so on down.
    package = Path(dogbreed.__file__).parent
    targets = re.findall(
        r"_target_: dogbreed\.([\w.]+)\.\w+", "".join(f.read_text() for f in (ROOT / "conf").rglob("*.yaml"))
    )
    roots = ["training/fit.py", *(f"{t.replace('.', '/')}.py" for t in targets)]
    roots = [r if (package / r).is_file() else r.replace(".py", "/__init__.py") for r in roots]
    closure = {m.as_posix() for root in roots for m in imported_modules(package, root)}
    assert {
        "model/classifier.py",
        "data/datamodule.py",
        "training/callbacks.py",
        "diagnostics/profiler.py",
    } <= closure
    assert "modeldir/archive.py" in closure
    assert {"modeldir/writer.py", "modeldir/archive.py"} <= closure
    assert not [m for m in closure if m.startswith("serving/")]


@pytest.mark.slow  # a process of its own, importing Lightning
def test_importing_training_loads_no_serving_module():
    # The same at run time, in case an import escapes the static reading (importlib, __getattr__).
    code = "import sys, dogbreed.training.fit; print([m for m in sys.modules if 'serving' in m])"
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert imported == "[]"


@pytest.mark.slow  # the shared tiny training run and a container-like Python
def test_code_holds_only_inference_and_answers_without_the_rest_of_the_project(trained_run, tmp_path):
    archive = pack_model(trained_run / "model", tmp_path / "model.tar.gz")
    model_dir = tmp_path / "opt_ml_model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    package = model_dir / CODE_DIR / "dogbreed"
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    # The handler and the model folder's reader with what it needs: format, predictor, runtimes.
    assert {
        "serving/handler.py",
        "modeldir/format.py",
        "modeldir/reader.py",
        "modeldir/predictor.py",
    } <= shipped
    assert "modeldir/runtimes.py" in shipped
    assert not {"training/fit.py", "tuning/study.py", "sagemaker/__init__.py", "serving/app.py"} & shipped

    image = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 40, 40)).save(image, format="JPEG")
    (tmp_path / "dog.jpg").write_bytes(image.getvalue())
    script = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_THE_INFERENCE_CONTAINER!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the inference container)")
sys.meta_path.insert(0, Absent())
sys.path.insert(0, {str(model_dir / CODE_DIR)!r})
import inference, dogbreed
assert dogbreed.__file__.startswith({str(model_dir / CODE_DIR)!r}), dogbreed.__file__
engine = inference.model_fn({str(model_dir)!r})
body, content_type = inference.transform_fn(engine, open({str(tmp_path / "dog.jpg")!r}, "rb").read(),
                                            "image/jpeg", "application/json; explain=gradcam")
print(body)
"""
    python = make_container_python(tmp_path / "venv")
    answered = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=300, env=without_pythonpath()
    )
    assert answered.returncode == 0, answered.stderr[-3000:]
    answer = json.loads(answered.stdout.strip().splitlines()[-1])
    class_names = json.loads((trained_run / "model" / "model.json").read_text())["class_names"]
    assert answer["predictions"][0]["topk"][0]["class_name"] in class_names
    assert answer["predictions"][0]["gradcam"]["png"]  # Grad-CAM needs nothing the container lacks
