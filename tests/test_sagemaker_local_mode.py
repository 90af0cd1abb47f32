"""SageMaker's local mode through the SDK itself: backend.instance_type=local trains in a local image,
endpoint.instance_type=local serves from one; no AWS account, no credentials, no S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from dogbreed.sagemaker.endpoint_local import deploy_local_endpoint
from dogbreed.sagemaker.endpoint_model import model_source
from dogbreed.sagemaker.local_mode import (
    CONTAINER_LABEL,
    LOCAL_ROLE,
    local_channels,
    local_session,
)
from dogbreed.sagemaker.session import SageMakerSetupError
from dogbreed.sagemaker.training_job import build_estimator, launch_training
from dogbreed.sagemaker.tuning_job import launch_tuning
from tests.conftest import CLOSED_PORT, ROOT, TINY, compose_config
from tests.http_client import free_port

LOCAL = ["backend=sagemaker", "backend.instance_type=local"]


def test_local_session_needs_no_account_and_mounts_the_code(no_aws, tmp_path):
    from sagemaker.local import LocalSession

    cfg = compose_config(tmp_path, LOCAL)
    session = local_session(cfg.backend, label="job-1", serving_port=18080)
    assert isinstance(session, LocalSession) and session.local_mode
    assert session.boto_region_name == "eu-west-1"  # AWS_REGION, as for a job in the cloud
    # No credentials anywhere: placeholders, so that nothing walks the credential chain or signs for real.
    assert session.boto_session.get_credentials().access_key == "local-mode"
    assert session.config == {
        "local": {
            "local_code": True,  # the source bundle is mounted at /opt/ml/code, never uploaded
            "container_config": {"labels": {CONTAINER_LABEL: "job-1"}},
            "serving_port": 18080,
        }
    }


def test_local_estimator_writes_to_the_run_directory_without_a_bucket(no_aws, tmp_path):
    overrides = [*LOCAL, "backend.image_uri=dogbreed:latest", "experiment=smoke", "model.lr=3e-4"]
    cfg = compose_config(tmp_path, overrides)
    session = local_session(cfg.backend, label="job-1")
    source = tmp_path / "source"
    source.mkdir()
    (source / "train.py").write_text("")
    # No bucket is asked for: the default bucket would need STS, and AWS_ENDPOINT_URL is a closed port.
    estimator = build_estimator(cfg, overrides, session, LOCAL_ROLE, source)
    assert estimator.output_path == f"file://{tmp_path.resolve()}"
    assert estimator.code_location is None and estimator.checkpoint_s3_uri is None
    assert (estimator.instance_type, estimator.image_uri) == ("local", "dogbreed:latest")
    assert estimator.hyperparameters()["model.lr"] == '"3e-4"'


def test_local_channels_are_file_uris(tmp_path, shapes3):
    cfg = compose_config(tmp_path, [*LOCAL, *TINY, f"data.root={shapes3}"])
    assert local_channels(cfg) == {"data": f"file://{shapes3.resolve()}"}
    given = compose_config(tmp_path, [*LOCAL, "+backend.inputs.train=file:///d/train"])
    assert local_channels(given) == {"train": "file:///d/train"}
    with pytest.raises(SageMakerSetupError, match="file:// or s3://"):
        local_channels(compose_config(tmp_path, [*LOCAL, "backend.inputs=/d"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param([], r"set backend\.image_uri=<image> \(build it with docker build", id="no-image"),
        pytest.param(["backend.spot=true"], r"backend\.spot=True does not work with", id="spot"),
        pytest.param(
            ["backend.debugger.enabled=true", "backend.image_uri=x"],
            r"backend\.debugger\.enabled=True .*debugger=on",
            id="sagemaker-debugger",
        ),
        pytest.param(["backend.dry_run=true"], "sends no request to print", id="dry-run"),
    ],
)
def test_what_local_mode_cannot_do_is_one_line_before_anything_runs(no_aws, tmp_path, overrides, message):
    overrides = [*LOCAL, "experiment=smoke", *overrides]
    with pytest.raises(SageMakerSetupError, match=message) as raised:
        launch_training(compose_config(tmp_path, overrides), overrides)
    assert "\n" not in str(raised.value)


def test_tuning_and_attach_refuse_local_mode(no_aws, tmp_path):
    overrides = [*LOCAL, "experiment=smoke", "backend.image_uri=x"]
    with pytest.raises(SageMakerSetupError, match="not tuning jobs; tune here with backend=local"):
        launch_tuning(compose_config(tmp_path, overrides, "tune"), overrides, {})
    from dogbreed.sagemaker.training_job import attach

    with pytest.raises(SageMakerSetupError, match="a local-mode job ends with the process"):
        attach(compose_config(tmp_path, overrides), "some-job", "training")


def test_a_failed_local_job_is_one_line_with_the_reason_the_container_wrote(tmp_path):
    from dogbreed.sagemaker.results import collect_local_training

    (tmp_path / "failure").write_text("train.py exited with status 2: error: model.lr=abc is not a number\n")
    with tarfile.open(tmp_path / "output.tar.gz", "w:gz") as tar:  # what the SDK packs from /opt/ml/output
        tar.add(tmp_path / "failure", arcname="failure")
    cfg = compose_config(tmp_path, LOCAL)
    with pytest.raises(SageMakerSetupError) as raised:
        collect_local_training(cfg, None, "job-1", "Failed to run: [...]. Process exited with code: 1")
    assert str(raised.value).startswith(
        "local training job job-1 Failed: train.py exited with status 2: error: model.lr=abc is not a number"
    )
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["TrainingJobStatus"] == "Failed" and (tmp_path / "output" / "failure").is_file()


DEPLOY_LOCAL = ["backend=sagemaker", "endpoint.instance_type=local"]


def test_local_endpoint_settings_are_checked_before_anything_starts(no_aws, tmp_path):
    def deploy(*overrides: str) -> str:
        with pytest.raises(SageMakerSetupError) as raised:
            deploy_local_endpoint(compose_config(tmp_path, [*DEPLOY_LOCAL, *overrides], "deploy"))
        assert "\n" not in str(raised.value)
        return str(raised.value)

    assert "set endpoint.image_uri=<image>" in deploy("model_dir=/m")
    assert "Ctrl-C" in deploy("teardown=true", "endpoint_name=e")
    assert "endpoint.autoscaling.enabled=true" in deploy("endpoint.autoscaling.enabled=true")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        assert f"server.port={port} is in use" in deploy(f"server.port={port}")


def test_local_endpoint_takes_a_local_jobs_file_archive(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"")
    cfg = compose_config(tmp_path, [*DEPLOY_LOCAL, f"model_data=file://{archive}"], "deploy")
    assert model_source(cfg, local=True) == f"file://{archive}"
    with pytest.raises(SageMakerSetupError, match="must be an s3://.../model.tar.gz URI"):
        model_source(cfg)  # an endpoint in SageMaker reads S3 only
    missing = compose_config(tmp_path, [*DEPLOY_LOCAL, "model_data=file:///nowhere/model.tar.gz"], "deploy")
    with pytest.raises(SageMakerSetupError, match="no such file"):
        model_source(missing, local=True)


@pytest.mark.slow
def test_train_py_without_an_image_says_so_in_one_line(tmp_path):
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(ROOT / "src"),
    }
    result = subprocess.run(
        [sys.executable, "train.py", *LOCAL, "experiment=smoke", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local mode runs an image of your own: set backend.image_uri=<image>")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------ end to end, in Docker
@pytest.fixture(scope="module")
def dogbreed_image() -> str:
    """The project's image (docker/build.sh, reused when up to date); skipped, saying why, without Docker
    or Docker Compose, which the SDK's local mode runs."""
    from tests.docker_support import built_image, docker_unavailable

    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    compose_v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if "v2" not in compose_v2.stdout and shutil.which("docker-compose") is None:
        pytest.skip("no Docker Compose (apt-get install docker-compose): SageMaker's local mode runs it")
    return built_image()


def labelled_containers(label: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={CONTAINER_LABEL}={label}"],
        capture_output=True,
        text=True,
    )
    return listed.stdout.split()


@pytest.fixture(scope="module")
def local_job(dogbreed_image: str, shapes3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local-mode training job through train.py: the SDK runs the image's `train` with Docker Compose."""
    run_dir = tmp_path_factory.mktemp("local-job") / "run"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            *LOCAL,
            f"backend.image_uri={dogbreed_image}",
            *TINY,
            "trainer.max_epochs=2",
            f"data.root={shapes3}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "AWS_EC2_METADATA_DISABLED": "true"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    (run_dir / "launcher.log").write_text(result.stdout + result.stderr)
    return run_dir


@pytest.mark.slow
def test_a_local_mode_job_trains_in_the_image_and_leaves_its_model_in_the_run_directory(local_job):
    from dogbreed.modeldir.format import model_dir_problem

    launcher = (local_job / "launcher.log").read_text()
    assert "docker-compose" in launcher or "docker compose" in launcher  # the SDK's own Compose run
    assert f"model_data=file://{local_job}/model.tar.gz" in launcher
    job = json.loads((local_job / "job.json").read_text())
    assert job["TrainingJobStatus"] == "Completed"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"file://{local_job}/model.tar.gz"
    with tarfile.open(local_job / "model.tar.gz") as tar:
        assert {"model.json", "weights.pt"} <= set(tar.getnames())
    assert model_dir_problem(local_job / "model") is None  # extracted: an exported model, as attach gives
    assert not labelled_containers(str(local_job))  # Compose's stopped container is removed


def _read_lines(process: subprocess.Popen, lines: list[str], ready: threading.Event, marker: str) -> None:
    for line in process.stdout:
        lines.append(line)
        if line.startswith(marker):
            ready.set()
    ready.set()  # the process ended


@pytest.mark.slow
def test_a_local_mode_endpoint_serves_the_jobs_model_through_the_sdk_predictor(
    local_job, dogbreed_image, shapes3, tmp_path
):
    import boto3
    from sagemaker.local import LocalSession

    from dogbreed.modeldir.reader import load_model
    from dogbreed.sagemaker.endpoint import breed_predictor

    port, name = free_port(), f"localmode-test-{os.getpid()}"
    deploy = subprocess.Popen(
        [
            sys.executable,
            "serve/deploy.py",
            "backend=sagemaker",
            "endpoint.instance_type=local",
            f"endpoint.image_uri={dogbreed_image}",
            f"model_data=file://{local_job}/model.tar.gz",
            f"server.port={port}",
            f"endpoint_name={name}",
            f"hydra.run.dir={tmp_path / 'deploy'}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "AWS_EC2_METADATA_DISABLED": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    threading.Thread(target=_read_lines, args=(deploy, lines, ready, f"endpoint={name}"), daemon=True).start()
    try:
        assert ready.wait(300) and deploy.poll() is None, "".join(lines[-80:])
        session = LocalSession(
            boto_session=boto3.Session(
                region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
            )
        )
        session.config = {"local": {"serving_port": port}}
        image = sorted((shapes3 / "test").glob("*/*.jpg"))[0]
        answer = breed_predictor(name, sagemaker_session=session).predict(image.read_bytes())
        top = answer["predictions"][0]["topk"][0]
        (expected,) = load_model(local_job / "model").predict([image], topk=1)
        assert top["index"] == expected[0].index
        assert abs(top["probability"] - expected[0].probability) < 1e-4  # fused BatchNorm in the server
    finally:
        deploy.send_signal(signal.SIGTERM)
        deploy.wait(timeout=120)
    output = "".join(lines)
    assert deploy.returncode == 0, output[-4000:]
    assert f"local endpoint {name} stopped (1 container(s) removed)" in output
    assert not labelled_containers(name)
