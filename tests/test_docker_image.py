"""The image of docker/, built and run for real: SageMaker's bring-your-own-container contract.

`train` runs with the network off and a fake /opt/ml bind-mounted (hyperparameters.json, a channel), and
must leave the model, the checkpoints, the metric lines and, on failure, /opt/ml/output/failure as a job
does. `serve` answers from the host through 127.0.0.1 exactly as the local server does with the same
model, and starts with the optimised engine with no network at all (nothing installed at start-up).
Skipped, with the reason, where no Docker engine answers (tests/docker_support.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dogbreed.sagemaker.metrics import metric_definitions
from tests.conftest import LOOSE_INT8, TINY
from tests.docker_support import (
    built_image,
    container_log,
    container_running,
    mount,
    run_container,
    started_container,
)
from tests.http_client import free_port, local_server
from tests.serving_support import Answer, encode, invoke, request

pytestmark = pytest.mark.slow

# The same server settings on both sides: one inference thread, one decoding worker.
SERVER = ["server.threads=1", "server.preprocess_workers=1"]
ACCEPT = "application/json; topk=3; probabilities=true"


@pytest.fixture(scope="session")
def image() -> str:
    return built_image()


def fake_opt_ml(base: Path, data: Path | None, hyperparameters: dict[str, str]) -> Path:
    """/opt/ml as SageMaker lays it out for a job: its hyperparameters and the `training` channel."""
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    if data is not None:  # copied: a symlink to the host's folder would not resolve in the container
        shutil.copytree(data, base / "input" / "data" / "training")
    return base


def smoke_hyperparameters(**extra: str) -> dict[str, str]:
    """The tiny recipe of the tests as a job's hyperparameters, with the optimised artifact made at export."""
    overrides = [*TINY, *LOOSE_INT8, "onnx.enabled=true", "onnx.calibration_size=48", "onnx.parity_size=36"]
    hyperparameters = dict(o.split("=", 1) for o in overrides)
    hyperparameters.update({"trainer.max_epochs": "2", "export": "true", **extra})
    hyperparameters["sagemaker_program"] = '"train.py"'  # the SDK's own keys are left out
    return hyperparameters


@pytest.fixture(scope="module")
def job(image: str, shapes3: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One training job in the container: the /opt/ml it leaves and its log."""
    base = fake_opt_ml(tmp_path_factory.mktemp("docker-job") / "opt-ml", shapes3, smoke_hyperparameters())
    done = run_container(image, ["train"], ["--network", "none", *mount(base, "/opt/ml")], timeout=1200)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    return base, log


def test_train_writes_the_model_checkpoints_and_metric_lines_where_sagemaker_expects_them(job):
    base, log = job
    model = base / "model"
    for name in ("weights.pt", "model.json", "model.onnx"):
        assert (model / name).is_file(), f"{name} missing from /opt/ml/model: {sorted(os.listdir(model))}"
    assert list((base / "checkpoints").glob("*.ckpt")), "no checkpoint under /opt/ml/checkpoints"
    # The job's metric definitions read the values out of the log, as CloudWatch's would.
    found = {d["Name"]: re.findall(d["Regex"], log) for d in metric_definitions()}
    for name in ("train/loss", "val/loss", "val/acc", "test/acc"):
        assert found[name], f"no {name} line in the job's log:\n{log[-3000:]}"
    assert not (base / "output" / "failure").exists()


def test_a_failed_job_writes_its_reason_to_output_failure_and_exits_non_zero(image, shapes3, tmp_path):
    base = fake_opt_ml(tmp_path / "opt-ml", shapes3, smoke_hyperparameters(**{"data.batch_size": "0"}))
    done = run_container(image, ["train"], ["--network", "none", *mount(base, "/opt/ml")], timeout=600)
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    failure = (base / "output" / "failure").read_text()
    assert "error: data.batch_size=0 is not allowed" in failure, failure
    assert not (base / "model" / "weights.pt").exists()


@pytest.fixture(scope="module")
def container_port(image: str, job: tuple[Path, str]) -> Iterator[int]:
    """`serve` in the container with the job's model at /opt/ml/model, published on 127.0.0.1 only."""
    port = free_port()
    options = ["-p", f"127.0.0.1:{port}:8080", *mount(job[0] / "model", "/opt/ml/model", read_only=True)]
    with started_container(image, ["serve", *SERVER], options) as name:
        wait_for_ping(name, port)
        yield port


@pytest.fixture(scope="module")
def local_port(job: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The local server of this checkout on the same model folder."""
    run_dir = tmp_path_factory.mktemp("local-serve")
    with local_server(job[0] / "model", SERVER, log=run_dir / "server.log", run_dir=run_dir) as (port, _):
        yield port


def wait_for_ping(name: str, port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert container_running(name), f"the container stopped:\n{container_log(name)[-3000:]}"
        try:
            if request(port, "GET", "/ping").status == 200:
                return
        except OSError:
            pass  # not listening yet (or docker's proxy has no server behind it yet)
        time.sleep(0.2)  # polling interval; readiness is the /ping answer
    raise TimeoutError(f"no 200 from /ping of {name} within {timeout} s")


def test_serve_answers_like_the_local_server_with_the_same_engine(container_port, local_port, shapes3):
    container_stats = request(container_port, "GET", "/stats").json()
    assert container_stats["engine"] == request(local_port, "GET", "/stats").json()["engine"]
    assert container_stats["engine"].startswith("openvino"), container_stats
    for path in sorted((shapes3 / "test").glob("*/*.jpg"))[::4]:
        body = path.read_bytes()
        ours, theirs = (
            invoke(container_port, body, "image/jpeg", ACCEPT),
            invoke(local_port, body, "image/jpeg", ACCEPT),
        )
        assert ours.status == theirs.status == 200, (ours.body, theirs.body)
        mine, local = ours.json()["predictions"][0], theirs.json()["predictions"][0]
        assert mine["topk"][0]["class_name"] == local["topk"][0]["class_name"], path
        assert mine["probabilities"] == pytest.approx(local["probabilities"], abs=1e-5), path
    png = encode(next((shapes3 / "test").glob("*/*.jpg")), "PNG")
    assert invoke(container_port, png, "image/png").json() == invoke(local_port, png, "image/png").json()


def hostile_requests(port: int) -> list[Answer]:
    return [
        invoke(port, b"\xff\xd8\xff\xe0" + b"\x00" * 200, "image/jpeg"),  # a JPEG cut short
        invoke(port, b"a dog, surely", "text/plain"),  # a content type the server does not take
        invoke(port, b"{" * 100, "application/json"),  # JSON that never closes
        invoke(port, b"\xff" * (6 * 2**20 + 1), "image/jpeg"),  # over SageMaker's 6 MiB payload limit
    ]


def test_hostile_requests_are_refused_as_the_local_server_refuses_them(container_port, local_port):
    for ours, theirs in zip(hostile_requests(container_port), hostile_requests(local_port), strict=True):
        assert 400 <= ours.status < 500, ours.body
        assert (ours.status, ours.body) == (theirs.status, theirs.body)
    assert request(container_port, "GET", "/ping").status == 200  # still serving


def test_serve_starts_the_optimised_engine_with_no_network_at_all(image, job):
    """Under network isolation nothing can be installed at start-up: the runtime is in the image."""
    probe = (
        "import json, urllib.request as u; "
        "print(json.dumps(json.load(u.urlopen('http://127.0.0.1:8080/stats', timeout=10))))"
    )
    options = ["--network", "none", *mount(job[0] / "model", "/opt/ml/model", read_only=True)]
    with started_container(image, ["serve", *SERVER], options) as name:
        deadline = time.monotonic() + 300
        while "Application startup complete" not in container_log(name):
            assert container_running(name), container_log(name)[-3000:]
            assert time.monotonic() < deadline, "serve did not start within 300 s"
            time.sleep(0.5)  # polling interval; readiness is the log line
        done = subprocess.run(["docker", "exec", name, "python", "-c", probe], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["engine"].startswith("openvino"), done.stdout
        assert "pip install" not in container_log(name)
