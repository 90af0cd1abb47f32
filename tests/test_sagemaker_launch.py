"""backend=sagemaker launcher: dry-run requests field by field, real API calls against moto, clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.config.overrides import hyperparameters_from_overrides
from dogbreed.sagemaker.metrics import RULE_METRIC_NAMES, metric_definitions
from dogbreed.sagemaker.session import SageMakerSetupError
from dogbreed.sagemaker.source_bundle import container_requirements, stage_source
from dogbreed.sagemaker.training_job import launch_training
from dogbreed.training.fit import fit
from dogbreed.training.metric_lines import METRIC_NAMES
from tests.conftest import CLOSED_PORT, ROOT, TINY, compose_config

ROLE = "arn:aws:iam::111122223333:role/dogbreed-test"


def decoded(hyperparameters: dict[str, str]) -> dict[str, object]:
    return {k: json.loads(v) for k, v in hyperparameters.items()}


def test_dry_run_request_carries_the_overrides_metrics_and_job_settings(no_aws, tmp_path, capsys):
    overrides = [
        "backend=sagemaker",
        "backend.dry_run=true",
        f"backend.role={ROLE}",
        "backend.bucket=my-bucket",
        "backend.instance_type=ml.m5.xlarge",
        "backend.spot=true",
        "backend.max_run_s=3600",
        "+backend.tags.team=vision",
        "experiment=smoke",
        "model.lr=3e-4",
        "trainer.num_sanity_val_steps=0",
        "data.root=/somewhere/local",
    ]
    cfg = compose_config(tmp_path, overrides)
    request = launch_training(cfg, overrides)

    printed = json.loads(capsys.readouterr().out)
    assert printed["TrainingJobName"] == request["TrainingJobName"]
    hyperparameters = decoded(request["HyperParameters"])
    job_overrides = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    assert job_overrides == {"experiment": "smoke", "model.lr": "3e-4", "trainer.num_sanity_val_steps": "0"}
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert hyperparameters["sagemaker_submit_directory"].startswith("s3://my-bucket/dogbreed/code/")
    assert request["RoleArn"] == ROLE
    assert request["ResourceConfig"] == {
        "VolumeSizeInGB": 50,
        "InstanceCount": 1,
        "InstanceType": "ml.m5.xlarge",
    }
    image = request["AlgorithmSpecification"]["TrainingImage"]
    assert re.search(r"pytorch-training:2\.8-cpu-py312$", image) and ".eu-west-1." in image
    names = [d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]]
    assert names == [*METRIC_NAMES, *RULE_METRIC_NAMES]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    # Every job its own checkpoint location: another job never finds this one's last.ckpt.
    assert request["CheckpointConfig"]["S3Uri"] == (
        f"s3://my-bucket/dogbreed/checkpoints/{request['TrainingJobName']}"
    )
    assert request["TrainingJobName"].startswith("dogbreed-smoke-")
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://my-bucket/dogbreed/output"
    assert {"Key": "team", "Value": "vision"} in request["Tags"]
    assert "InputDataConfig" not in request  # the embedded smoke data is generated inside the job
    assert "DebugHookConfig" not in request and request["ProfilerConfig"] == {"DisableProfiler": True}


def test_dry_run_names_local_data_as_one_channel_without_uploading(no_aws, tmp_path, shapes3, capsys):
    overrides = ["backend=sagemaker", "backend.dry_run=true", *TINY, f"data.root={shapes3}"]
    request = launch_training(compose_config(tmp_path, overrides), overrides)
    (channel,) = request["InputDataConfig"]
    assert channel["ChannelName"] == "data"
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == "s3://set-backend-bucket/dogbreed/data/shapes3"
    assert "data.root" not in decoded(request["HyperParameters"])


def test_dry_run_with_three_s3_channels(no_aws, tmp_path):
    uris = {split: f"s3://b/dogImages/{split}" for split in ("train", "valid", "test")}
    overrides = [
        "backend=sagemaker",
        "backend.dry_run=true",
        *(f"+backend.inputs.{k}={v}" for k, v in uris.items()),
    ]
    request = launch_training(compose_config(tmp_path, overrides), overrides)
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels == uris


def test_container_requirements_never_reinstall_torch():
    requirements = container_requirements()
    assert any(r.startswith("lightning") for r in requirements)
    assert any(r.startswith("hydra-core") for r in requirements)
    assert not [r for r in requirements if re.match(r"torch(vision)?\b", r)]


def test_hyperparameters_leave_out_launcher_settings():
    assert hyperparameters_from_overrides(
        [
            "backend=sagemaker",
            "backend.wait=true",
            "hydra.run.dir=x",
            "data.root=/d",
            "model_dir=m",
            "data.batch_size=8",
            "~logger",
            "+x.y=[1,2]",
        ]
    ) == {"data.batch_size": "8", "~logger": "", "+x.y": "[1,2]"}


def test_metric_regexes_read_the_lines_a_real_training_run_prints(shapes3, tmp_path, capfd):
    metrics = fit(
        compose_config(
            tmp_path,
            [
                *TINY,
                f"data.root={shapes3}",
                "data.images_per_class=8",
                "trainer.max_epochs=1",
                "export=false",
            ],
        )
    )
    stdout = capfd.readouterr().out
    parsed = {}
    for definition in metric_definitions():
        values = [float(v) for v in re.findall(definition["Regex"], stdout)]
        if values:
            parsed[definition["Name"]] = values[-1]  # the final summary line
    logged = {name: value for name, value in metrics.items() if name in METRIC_NAMES}
    assert {"val/loss", "val/acc", "test/acc", "train/loss"} <= set(parsed)
    assert parsed == pytest.approx(logged, abs=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backend.bucket=b", "backend.role=r"], "no AWS credentials"),
        (["backend.role=r"], "no S3 bucket"),
        (["backend.bucket=b"], "no IAM role"),
        (
            ["backend.bucket=b", "backend.role=r", "backend.instance_type=ml.g9z.huge"],
            "unknown instance type",
        ),
    ],
)
def test_missing_settings_give_one_line_before_anything_is_sent(
    no_aws, monkeypatch, tmp_path, overrides, message
):
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    monkeypatch.delenv("SAGEMAKER_BUCKET", raising=False)
    if message != "no AWS credentials":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    overrides = ["backend=sagemaker", "experiment=smoke", *overrides]
    with pytest.raises(SageMakerSetupError, match=message) as raised:
        launch_training(compose_config(tmp_path, overrides), overrides)
    assert "\n" not in str(raised.value)


def test_missing_sdk_says_which_extra_to_install(no_aws, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # what an environment without the extra looks like
    overrides = ["backend=sagemaker", "backend.dry_run=true"]
    with pytest.raises(SageMakerSetupError, match=r"pip install -e '\.\[sagemaker\]'"):
        launch_training(compose_config(tmp_path, overrides), overrides)


@pytest.mark.slow
def test_train_py_reports_a_setup_error_in_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    result = subprocess.run(
        [sys.executable, "train.py", "backend=sagemaker", "backend.bucket=b", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no IAM role: set backend.role=")
    assert "Traceback" not in result.stderr


def test_source_bundle_holds_the_entry_point_config_and_library(tmp_path):

    staged = stage_source(tmp_path / "src-bundle")
    assert (staged / "train.py").read_text() == (ROOT / "train.py").read_text()
    assert (staged / "conf" / "backend" / "sagemaker.yaml").is_file()
    assert (staged / "src" / "dogbreed" / "training" / "fit.py").is_file()
    assert (staged / "src" / "dogbreed" / "config" / "job_environment.py").is_file()
    assert not list(Path(staged).rglob("__pycache__"))
    assert "lightning" in (staged / "requirements.txt").read_text()


def test_a_job_carries_the_launchers_commit_and_tensorboard_output(no_aws, tmp_path):
    import subprocess

    overrides = ["backend=sagemaker", "backend.dry_run=true", "experiment=smoke", "logger=[csv,tensorboard]"]
    request = launch_training(compose_config(tmp_path, overrides), overrides)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["dogbreed:git-commit"] == commit and tags["project"] == "dogbreed"
    assert request["Environment"]["DOGBREED_GIT_COMMIT"] == commit
    tensorboard = request["TensorBoardOutputConfig"]
    assert tensorboard["S3OutputPath"] == "s3://set-backend-bucket/dogbreed/tensorboard/dogbreed-smoke"
    assert tensorboard["LocalPath"] == "/opt/ml/output/tensorboard"


def test_the_source_bundle_installs_a_loggers_package_in_the_job(tmp_path):
    staged = stage_source(tmp_path / "source", ["mlflow-skinny>=3.1,<4"])
    requirements = (staged / "requirements.txt").read_text().split()
    assert "mlflow-skinny>=3.1,<4" in requirements
    assert not [r for r in requirements if re.match(r"torch(vision)?\b(?!metrics)", r)]
