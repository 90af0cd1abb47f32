"""A job-trained model is the model an endpoint serves, optimised: a training job replayed through the real
toolkit in a container-like Python without the ONNX runtimes installs them from the source bundle's
requirements.txt, exports ONNX/INT8 versions with parity figures and ships the serving runtime's wheels in
its model; the archive then starts under the inference handler service in another such Python with no
package index, and answers through OpenVINO INT8."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from dogbreed.modeldir.reader import load_model
from dogbreed.serving.engine import InferenceEngine
from tests.conftest import LOOSE_INT8
from tests.container_packages import (
    RUNTIME_DISTRIBUTIONS,
    install_model_requirements,
    installed_in,
    no_index_environment,
    wheels_of_installed,
)
from tests.sagemaker_replay import TINY_JOB, extract, make_container_python, run_job
from tests.serving_support import through_sagemaker_handler
from tests.test_sagemaker_jobs_replayed import backend, launched

pytest.importorskip("sagemaker_pytorch_serving_container")
pytest.importorskip("openvino")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ACCEPT = "application/json; probabilities=true"
# What `pip download` of the runtimes resolves besides them (the wheels a job fetches for its model).
RESOLVED_WITH_THEM = ("openvino-telemetry", "numpy", "packaging")


@pytest.fixture(scope="module")
def local_wheels(tmp_path_factory) -> Path:
    """The replayed job's package source, with no index: wheels of this environment's runtimes."""
    folder = tmp_path_factory.mktemp("local-wheels")
    return wheels_of_installed([*RUNTIME_DISTRIBUTIONS, *RESOLVED_WITH_THEM], folder)


def as_sagemaker_uploads(model_dir: Path, archive: Path) -> Path:
    """/opt/ml/model as SageMaker uploads it at the end of a job: model.tar.gz of the folder's contents."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return archive


def test_a_job_trained_model_is_served_by_openvino_int8_with_no_package_index(
    aws, shapes3, tmp_path, monkeypatch, local_wheels
):
    overrides = [*backend(), *TINY_JOB, f"data.root={shapes3}", "trainer.max_epochs=2", *LOOSE_INT8]
    overrides += ["onnx.calibration_size=48", "onnx.parity_size=36"]
    job = launched(tmp_path / "launch", overrides)
    job_python = make_container_python(tmp_path / "job-venv", without=RUNTIME_DISTRIBUTIONS)
    monkeypatch.setenv("PIP_FIND_LINKS", str(local_wheels))  # the job's pip: no index, these wheels
    result = run_job(job, aws, job_python, tmp_path / "job")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    # The toolkit installed the runtimes from the bundle's requirements.txt; export used them.
    assert all(installed_in(job_python, name) for name in RUNTIME_DISTRIBUTIONS), log[-5000:]
    assert "artifact skipped" not in log and "not shipped" not in log, log[-5000:]

    endpoint = tmp_path / "endpoint"  # the endpoint's /opt/ml
    archive = as_sagemaker_uploads(tmp_path / "job" / "opt_ml" / "model", tmp_path / "model.tar.gz")
    model_dir = extract(archive, endpoint / "model")
    int8 = json.loads((model_dir / "model.json").read_text())["artifacts"]["int8"]
    assert int8["file"] == "model.int8.onnx" and (model_dir / int8["file"]).is_file()
    assert {"openvino", "onnxruntime"} <= set(int8["parity"]) and not int8.get("refused")
    wheels = sorted(p.name for p in (model_dir / "code" / "wheels").iterdir())
    assert [w.split("-")[0] for w in wheels] == ["openvino", "openvino_telemetry"], wheels
    requirements = (model_dir / "code" / "requirements.txt").read_text().splitlines()
    assert {"--no-index", "--find-links wheels", "openvino==" + openvino_version()} <= set(requirements)

    # The endpoint: the toolkit's own install of code/requirements.txt, in a Python without the runtime,
    # with no index to reach; then the handler service loads the model and answers.
    serve_python = make_container_python(tmp_path / "serve-venv", without=RUNTIME_DISTRIBUTIONS)
    environment = no_index_environment(endpoint)
    done = install_model_requirements(serve_python, environment)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert installed_in(serve_python, "openvino") and not installed_in(serve_python, "onnxruntime")

    images = sorted((shapes3 / "test").rglob("*.jpg"))[:4]
    requests = [{"body_file": str(p), "content_type": "image/jpeg", "accept": ACCEPT} for p in images]
    handler_env = {**environment, "DOGBREED_THREADS": "1"}
    report = through_sagemaker_handler(model_dir, requests, tmp_path, handler_env, python=serve_python)
    assert report["engine"] == "openvino int8"
    served = [json.loads(r["body"])["predictions"][0]["probabilities"] for r in report["results"]]

    # The same answers as OpenVINO INT8 here, and the torch network's within the export's parity limit.
    local = InferenceEngine.load(model_dir, device="cpu", engine="openvino", threads=1)
    reference = load_model(model_dir)
    limit = int8["limits"]["max_prob_diff"]
    for answer, image in zip(served, images, strict=True):
        batch = reference.preprocess([image])
        assert answer == pytest.approx(local.probabilities(batch)[0].tolist(), abs=1e-5)
        assert answer == pytest.approx(reference.probabilities(batch)[0].tolist(), abs=limit)


def openvino_version() -> str:
    from importlib import metadata

    return metadata.version("openvino")
