"""After a job: `attach=<job>` downloads what a finished training or tuning job left (moto's S3 and API).
And the launcher's one-line errors (bad credentials, refusals, missing data) through the real entry points."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from omegaconf import OmegaConf

from dogbreed.sagemaker.results import attach_tuning
from dogbreed.sagemaker.session import make_session
from dogbreed.sagemaker.training_job import launch_training
from tests.conftest import MOTO_BUCKET, ROOT, compose_config

ROLE = "arn:aws:iam::123456789012:role/dogbreed-results"


def targz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def finished_job(aws, tmp_path) -> dict:
    """A training job created through the SDK (moto completes it at once) and what it would leave in S3."""
    overrides = [
        "backend=sagemaker",
        f"backend.role={ROLE}",
        f"backend.bucket={MOTO_BUCKET}",
        "experiment=smoke",
        "backend.instance_type=ml.m5.large",
    ]
    name = launch_training(compose_config(tmp_path / "launch", overrides), overrides)["TrainingJobName"]
    job = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=name)
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").partition("/")
    aws.put_object(Bucket=bucket, Key=key, Body=targz({"weights.pt": b"w", "model.json": b'{"arch": "x"}'}))
    output = f"{job['OutputDataConfig']['S3OutputPath'].removeprefix(f's3://{bucket}/')}/{name}"
    aws.put_object(
        Bucket=bucket,
        Key=f"{output}/output/output.tar.gz",
        Body=targz({"metrics.json": b'{"test/acc": 0.9}', "debug/rule_outcomes.json": b"[]"}),
    )
    report = "rule-output/ProfilerReport-1700000000/profiler-output/profiler-report.html"
    aws.put_object(Bucket=bucket, Key=f"{output}/{report}", Body=b"<html>report</html>")
    return job


def run_entry(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_attach_downloads_a_finished_training_jobs_model_output_and_reports(aws, tmp_path):
    job = finished_job(aws, tmp_path)
    run_dir = tmp_path / "attached"
    result = run_entry(
        "train.py", "backend=sagemaker", f"attach={job['TrainingJobName']}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "model" / "weights.pt").read_bytes() == b"w"
    assert json.loads((run_dir / "output" / "metrics.json").read_text()) == {"test/acc": 0.9}
    report = run_dir / "rule-output" / "ProfilerReport-1700000000" / "profiler-output"
    assert (report / "profiler-report.html").read_text() == "<html>report</html>"
    assert json.loads((run_dir / "job.json").read_text())["TrainingJobName"] == job["TrainingJobName"]


def hostile_archive(kind: str) -> bytes:
    """A model.tar.gz a hostile writer could leave: a member climbing out, a link out, or cut short."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"weights.pt": b"new weights", "model.json": b"{}"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if kind == "climbs-out":
            info = tarfile.TarInfo("../escaped.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        elif kind == "links-out":
            info = tarfile.TarInfo("code/requirements.txt")
            info.type, info.linkname = tarfile.SYMTYPE, "../../../escaped.txt"
            tar.addfile(info)
    data = buffer.getvalue()
    return data[: len(data) // 2] if kind == "truncated" else data


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["climbs-out", "links-out", "truncated"])
def test_attach_refuses_a_bad_model_archive_in_one_line_and_keeps_the_previous_model(aws, tmp_path, kind):
    job = finished_job(aws, tmp_path)
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").partition("/")
    aws.put_object(Bucket=bucket, Key=key, Body=hostile_archive(kind))
    run_dir = tmp_path / "attached"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "weights.pt").write_bytes(b"previous weights")  # an earlier attach's model
    result = run_entry(
        "train.py", "backend=sagemaker", f"attach={job['TrainingJobName']}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a usable archive" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == ["weights.pt"]
    assert (run_dir / "model" / "weights.pt").read_bytes() == b"previous weights"
    assert not (run_dir / "model.tar.gz").exists()
    assert not list(run_dir.glob(".model*"))  # no staging litter
    assert not list(tmp_path.rglob("escaped.txt"))


def test_attach_to_a_tuning_job_writes_the_local_tuners_best_files_and_fetches_the_best_job(aws, tmp_path):
    best = finished_job(aws, tmp_path)
    cfg = compose_config(tmp_path / "tune", ["backend=sagemaker"], "tune")
    session = make_session(cfg.backend, bucket_required=False)
    # moto answers every tuning job with a canned best job, so that answer is stubbed; the best training
    # job's description is moto's own.
    tuning = {
        "HyperParameterTuningJobName": "dogbreed-tune-1",
        "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/t",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 1},
        },
        "HyperParameterTuningJobStatus": "Completed",
        "CreationTime": "2026-11-30T05:00:00Z",
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"experiment": '"smoke"', "sagemaker_program": '"train.py"'},
            "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "x"},
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
        "BestTrainingJob": {
            "TrainingJobName": best["TrainingJobName"],
            "TrainingJobArn": best["TrainingJobArn"],
            "CreationTime": "2026-11-30T05:00:00Z",
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"model.lr": "0.00031", "model.freeze": '"layer4"'},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "Maximize",
                "MetricName": "val/acc",
                "Value": 0.8,
            },
        },
    }
    described_best = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(
        TrainingJobName=best["TrainingJobName"]
    )
    with Stubber(session.sagemaker_client) as stubber:
        stubber.add_response("describe_hyper_parameter_tuning_job", tuning)
        stubber.add_response("describe_training_job", described_best)
        attach_tuning(cfg, session, "dogbreed-tune-1")

    run_dir = Path(cfg.run_dir)
    overrides = (run_dir / "best_overrides.txt").read_text().split()
    assert overrides == ["experiment=smoke", "model.freeze=layer4", "model.lr=0.00031"]
    summary = OmegaConf.to_container(OmegaConf.load(run_dir / "best_params.yaml"))
    assert summary["study_name"] == "dogbreed-tune-1" and summary["trial"] == best["TrainingJobName"]
    assert summary["direction"] == "maximize" and summary["value"] == pytest.approx(0.8)
    assert (run_dir / "best" / "model" / "weights.pt").is_file()
    assert (run_dir / "best" / "rule-output").is_dir()


class _RefusingAWS(BaseHTTPRequestHandler):
    """An AWS endpoint that refuses every call as AWS does with expired credentials."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        message = "The security token included in the request is expired"
        if "X-Amz-Target" in self.headers:  # JSON protocol (SageMaker)
            body = json.dumps({"__type": "ExpiredTokenException", "message": message}).encode()
            kind = "application/x-amz-json-1.1"
        else:  # REST-XML (S3) and query (STS) protocols
            body = f"<Error><Code>ExpiredToken</Code><Message>{message}</Message></Error>".encode()
            kind = "application/xml"
        self.send_response(400)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_aws(monkeypatch, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingAWS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "expired")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "expired")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    yield
    server.shutdown()


@pytest.mark.parametrize(
    "command",
    [
        ["train.py", "backend=sagemaker", "experiment=smoke", f"backend.role={ROLE}", "backend.bucket=b"],
        ["tune.py", "backend=sagemaker", "experiment=smoke", f"backend.role={ROLE}", "backend.bucket=b"],
        ["train.py", "backend=sagemaker", "attach=some-job"],
    ],
    ids=["train", "tune", "attach"],
)
def test_expired_credentials_are_one_error_line(refusing_aws, tmp_path, command):
    result = run_entry(*command, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ExpiredToken" in errors[0] and "refresh the credentials" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_data_folder_for_a_sagemaker_job_is_one_error_line(no_aws, tmp_path):
    result = run_entry(
        "train.py",
        "backend=sagemaker",
        "backend.dry_run=true",
        "data.root=/nonexistent/dogImages",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "data.root=/nonexistent/dogImages" in line and "backend.inputs" in line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backend.instance_count=2"], "backend.instance_count=2 trains one model .* add trainer=ddp"),
        (["backend.instance_count=2", "trainer=ddp", "trainer.num_nodes=3"], "trainer.num_nodes=3 disagrees"),
        (["backend.network_isolation=true"], "network_isolation=true: .* backend.image_uri"),
    ],
)
def test_wrong_job_combinations_stop_before_launch(no_aws, tmp_path, overrides, message):
    from dogbreed.sagemaker.session import SageMakerSetupError

    overrides = ["backend=sagemaker", "backend.dry_run=true", "experiment=smoke", *overrides]
    with pytest.raises(SageMakerSetupError, match=message):
        launch_training(compose_config(tmp_path, overrides), overrides)


def test_security_settings_and_the_sdks_own_config_file_reach_the_request(no_aws, tmp_path, monkeypatch):
    # An administrator's defaults in the SDK's config file apply where the run sets nothing.
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  TrainingJob:\n    OutputDataConfig:\n"
        "      KmsKeyId: arn:aws:kms:eu-west-1:111122223333:key/admin-default\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    overrides = [
        "backend=sagemaker",
        "backend.dry_run=true",
        "experiment=smoke",
        "backend.vpc.subnets=[subnet-1]",
        "backend.vpc.security_group_ids=[sg-1]",
        "backend.encrypt_inter_container_traffic=true",
        "backend.kms.volume=alias/volume",
        "backend.input_mode=FastFile",
        "backend.network_isolation=true",
        "backend.image_uri=111122223333.dkr.ecr.eu-west-1.amazonaws.com/dogbreed:train",
    ]
    request = launch_training(compose_config(tmp_path, overrides), overrides)
    assert request["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert request["EnableNetworkIsolation"] is True
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == "alias/volume"
    assert request["OutputDataConfig"]["KmsKeyId"].endswith("key/admin-default")
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("/dogbreed:train")


def test_a_tuning_job_keeps_a_checkpoint_location_per_tuning_job(no_aws, tmp_path):
    from dogbreed.sagemaker.tuning_job import launch_tuning

    overrides = ["backend=sagemaker", "backend.dry_run=true", "experiment=smoke", "backend.spot=true"]
    space = {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    request = launch_tuning(compose_config(tmp_path, overrides, "tune"), overrides, space)
    uri = request["TrainingJobDefinition"]["CheckpointConfig"]["S3Uri"]
    assert uri.endswith(f"/checkpoints/{request['HyperParameterTuningJobName']}")


def test_the_endpoints_predictor_sends_image_bytes_and_reads_json():
    from dogbreed.sagemaker.endpoint import breed_predictor

    predictor = breed_predictor("dogbreed-endpoint", sagemaker_session=object())
    assert predictor.content_type == "image/jpeg" and predictor.accept == ("application/json",)
