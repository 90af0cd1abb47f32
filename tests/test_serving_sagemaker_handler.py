"""serve/inference.py inside a packed model, driven through the real sagemaker-pytorch-inference handler
service, answers exactly as the local server does."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.modeldir.archive import ENTRY_POINT_SOURCE, REQUIREMENTS, pack_model
from dogbreed.serving.app import create_app
from dogbreed.serving.engine import available_cpus
from dogbreed.serving.settings import ServerSettings
from tests.conftest import ROOT
from tests.serving_support import encode, invoke, running_server, through_sagemaker_handler

pytest.importorskip("sagemaker_pytorch_serving_container")
pytestmark = pytest.mark.slow  # needs the shared tiny training run


def test_serve_inference_py_is_the_packed_entry_point():
    assert (ROOT / "serve" / "inference.py").read_text() == ENTRY_POINT_SOURCE


@pytest.fixture(scope="module")
def packed_model(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz of the trained run, extracted where SageMaker would put it (/opt/ml/model)."""
    work = tmp_path_factory.mktemp("sagemaker")
    shutil.copytree(trained_run / "model", work / "export")
    archive = pack_model(work / "export")
    assert archive == work / "model.tar.gz"
    extracted = work / "opt-ml-model"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(extracted, filter="data")
    assert {"weights.pt", "model.json", "code/inference.py", "code/requirements.txt"} <= set(names)
    assert "code/dogbreed/serving/handler.py" in names
    assert not any("__pycache__" in n for n in names)
    return extracted


def test_requirements_never_reinstall_torch(packed_model):
    requirements = (packed_model / "code" / "requirements.txt").read_text()
    assert requirements == REQUIREMENTS
    listed = [
        line.split("=")[0].split("<")[0].split(">")[0].strip().lower() for line in requirements.splitlines()
    ]
    listed = [name for name in listed if name and not name.startswith("#")]
    assert listed and not {"torch", "torchvision"} & set(listed)


def test_handler_service_answers_as_the_local_server(packed_model, shapes3, tmp_path):
    image = sorted((shapes3 / "test").iterdir())[1]
    image = sorted(image.iterdir())[0]
    png = tmp_path / "dog.png"
    png.write_bytes(encode(Image.open(image).convert("RGB"), "PNG"))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    accept = "application/json; topk=2; probabilities=true"
    requests = [
        {"body_file": str(image), "content_type": "image/jpeg", "accept": accept},
        {"body_file": str(png), "content_type": "application/x-image", "accept": accept},
        {"body_file": str(image), "content_type": "image/jpeg", "accept": None},
        {
            "body_file": str(image),
            "content_type": "image/jpeg",
            "accept": "application/json; explain=gradcam",
        },
        {"body_file": str(text), "content_type": "image/jpeg", "accept": None},
        {"body_file": str(image), "content_type": "text/plain", "accept": None},
        # The toolkit decodes text/csv bodies as UTF-8 before any handler code: a text body reaches input_fn.
        {"body_file": str(text), "content_type": "text/csv", "accept": None},
        {"body_file": str(image), "content_type": "image/jpeg", "accept": "text/csv"},
    ]
    threads = available_cpus()  # the same intra-op thread count as the local server: the same floats
    report = through_sagemaker_handler(packed_model, requests, tmp_path, {"DOGBREED_THREADS": str(threads)})
    # The handler ran from the packed copy of the package, as in the container.
    assert Path(report["dogbreed_file"]).resolve().is_relative_to(packed_model.resolve() / "code")
    results = report["results"]

    with running_server(create_app(packed_model, ServerSettings(threads=threads, max_wait_ms=0))) as port:
        local = [
            invoke(port, Path(r["body_file"]).read_bytes(), r["content_type"], r["accept"])
            for r in requests[:4]
        ]
    for via_handler, via_server in zip(results[:4], local, strict=True):
        assert via_handler["status"] == 200 and via_server.status == 200
        assert via_handler["content_type"] == "application/json"
        assert via_handler["body"] == via_server.body.decode()  # byte for byte the same JSON
    assert len(json.loads(results[0]["body"])["predictions"][0]["probabilities"]) == 3
    assert len(json.loads(results[2]["body"])["predictions"][0]["topk"]) == 3  # default k=5, 3 classes
    (explained,) = json.loads(results[3]["body"])["predictions"]  # the same heat map as the local server's
    assert explained["gradcam"]["index"] == explained["topk"][0]["index"] and explained["gradcam"]["png"]

    # Request faults keep their 4xx through the toolkit (which answers 500 to any other exception).
    statuses = [(r["status"], r["body"].splitlines()[0]) for r in results[4:]]
    assert statuses[0][0] == 400 and "not an image" in statuses[0][1]
    assert statuses[1][0] == 415 and "text/plain unsupported" in statuses[1][1]
    assert statuses[2][0] == 415 and "text/csv unsupported" in statuses[2][1]
    assert statuses[3][0] == 406 and "Accept text/csv" in statuses[3][1]
