"""The engines behind both servers: the optimised artifact through the real SageMaker handler service and
the local server, torch-only serving on a Python without the runtimes, and the deploy config's switches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from dogbreed.model.network import build_network
from dogbreed.modeldir.archive import pack_model
from dogbreed.modeldir.onnx_conversion import export_onnx
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.runtimes import OpenVinoSession
from dogbreed.serving.app import create_app
from dogbreed.serving.settings import ServerSettings, settings_from_config
from tests.artifact_support import runtime_blocker
from tests.conftest import CONF_DIR, ROOT, TINY
from tests.http_client import free_port
from tests.serving_support import invoke, request, running_server, through_sagemaker_handler

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

ACCEPT = "application/json; topk=2; probabilities=true"


def test_deploy_config_reaches_engine_queue_and_endpoint_environment():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("deploy", overrides=["model_dir=m", "server.engine=onnxruntime", "server.max_queue=8"])
    settings = settings_from_config(cfg)
    assert (settings.engine, settings.max_queue, settings.retry_after_s) == ("onnxruntime", 8, 1)
    assert cfg.endpoint.environment.DOGBREED_ENGINE == "onnxruntime"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        default = compose("deploy", overrides=["model_dir=m"])
    assert settings_from_config(default).engine == "auto"


@pytest.mark.slow
def test_without_the_runtimes_auto_serves_with_torch_and_says_so_once(optimized_run, shapes3, tmp_path):
    """serve/deploy.py in a Python where openvino, onnxruntime and onnx cannot be imported."""
    blocker = runtime_blocker(tmp_path / "no-runtimes")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT / 'src'}"}
    check = subprocess.run([sys.executable, "-c", "import openvino"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "ModuleNotFoundError" in check.stderr
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "serve" / "deploy.py"),
        "backend=local",
        f"model_dir={optimized_run}",
        f"server.port={port}",
        "server.max_wait_ms=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    log_file = tmp_path / "server.log"
    with open(log_file, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while True:  # readiness is /ping's 200; the interval below only spaces the polls
            assert server.poll() is None, log_file.read_text()[-3000:]
            assert time.monotonic() < deadline, "no 200 from /ping"
            try:
                if request(port, "GET", "/ping").status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        image = sorted((shapes3 / "test").rglob("*.jpg"))[0]
        answer = invoke(port, image.read_bytes(), "image/jpeg", ACCEPT)
        stats = request(port, "GET", "/stats").json()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert answer.status == 200, answer.body
    reference = load_model(optimized_run)
    expected = reference.probabilities(reference.preprocess([image]))[0].tolist()
    assert answer.json()["predictions"][0]["probabilities"] == pytest.approx(expected, abs=1e-4)
    assert stats["engine"] == "torch fuse"
    said = [line for line in log_file.read_text().splitlines() if "serving with torch because" in line]
    assert len(said) == 1 and "openvino is not installed" in said[0] and "dogbreed[openvino]" in said[0], said


@pytest.fixture(scope="module")
def packed_optimized(optimized_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("sagemaker-optimized")
    shutil.copytree(optimized_run, work / "export")
    extracted = work / "opt-ml-model"
    with tarfile.open(pack_model(work / "export")) as tar:
        tar.extractall(extracted, filter="data")
    return extracted


@pytest.mark.slow
def test_sagemaker_handler_service_answers_through_the_artifact_as_the_local_server(
    packed_optimized, shapes3, tmp_path
):
    assert (packed_optimized / "model.int8.onnx").is_file()
    images = sorted((shapes3 / "test").rglob("*.jpg"))[:3]
    requests = [{"body_file": str(p), "content_type": "image/jpeg", "accept": ACCEPT} for p in images]
    env = {"DOGBREED_THREADS": "1", "DOGBREED_ENGINE": "openvino"}
    results = through_sagemaker_handler(packed_optimized, requests, tmp_path, env)["results"]

    settings = ServerSettings(threads=1, max_wait_ms=0, engine="openvino")
    with running_server(create_app(packed_optimized, settings)) as port:
        assert request(port, "GET", "/stats").json()["engine"] == "openvino int8"
        local = [invoke(port, p.read_bytes(), "image/jpeg", ACCEPT) for p in images]
    reference = load_model(packed_optimized)
    for via_handler, via_server, image in zip(results, local, images, strict=True):
        assert via_handler["status"] == 200 and via_server.status == 200
        handler_json, server_json = json.loads(via_handler["body"]), via_server.json()
        assert handler_json.keys() == server_json.keys()
        (h,), (s,) = handler_json["predictions"], server_json["predictions"]
        assert h["topk"] == s["topk"]
        assert h["probabilities"] == pytest.approx(s["probabilities"], abs=1e-6)
        # INT8, not torch: close to the fp32 network, not equal to it.
        expected = reference.probabilities(reference.preprocess([image]))[0].tolist()
        assert h["probabilities"] == pytest.approx(expected, abs=0.5)
        assert h["probabilities"] != pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_without_the_extras_training_exports_the_model_and_says_the_artifact_was_skipped(shapes3, tmp_path):
    blocker = runtime_blocker(tmp_path / "no-runtimes")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT / 'src'}"}
    run_dir = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("onnx.")]
    command = [
        sys.executable,
        "train.py",
        *overrides,
        f"data.root={shapes3}",
        "trainer.max_epochs=1",
        "onnx.enabled=true",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "optimised inference artifact skipped (serving will use torch)" in output
    assert "pip install 'dogbreed[onnx]'" in output
    config = json.loads((run_dir / "model" / "model.json").read_text())
    assert "artifacts" not in config and not (run_dir / "model" / "model.onnx").exists()
    assert (run_dir / "metrics.json").is_file()


def test_openvino_answers_a_batch_of_one_from_its_static_program_with_the_same_numbers(tmp_path):
    path = export_onnx(build_network("resnet18", 3).eval(), tmp_path / "model.onnx", crop_size=32)
    session = OpenVinoSession(path, threads=1)
    assert session.single_compiled.input(0).get_partial_shape().to_shape() == [1, 3, 32, 32]
    assert session.compiled.input(0).get_partial_shape().is_dynamic
    batch = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)

    one = session(batch[:1])
    # The batch of one ran on the static program: its request holds exactly this answer.
    assert np.array_equal(session.single_request.get_output_tensor(0).data, one)
    several = session(batch)
    assert session.request.get_output_tensor(0).data.shape == (4, 3)
    assert np.array_equal(session.single_request.get_output_tensor(0).data, one)  # untouched by batch 4
    # The figures checked in batches at export describe batch-1 answers too.
    np.testing.assert_allclose(one, several[:1], rtol=1e-5, atol=1e-5)
