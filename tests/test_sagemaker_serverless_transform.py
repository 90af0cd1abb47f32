"""deploy.py backend=sagemaker as a serverless endpoint and as a batch transform job: dry-run requests field
by field and valid by botocore's model of the API, one-line errors for values SageMaker refuses, a serverless
deploy and teardown against moto, and a transform job created against moto and replayed through the real
inference handler service over ten JPEG and PNG files, answering as the local predictor does."""

from __future__ import annotations

import copy
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import torch
from botocore.stub import Stubber

from dogbreed.config.errors import UserError
from dogbreed.modeldir.reader import load_model
from dogbreed.sagemaker.batch_transform import TransformJobError, run_batch_transform, wait_until_done
from dogbreed.sagemaker.endpoint import deploy_endpoint, teardown_endpoint
from tests.aws_requests import request_problems
from tests.conftest import CLOSED_PORT, MOTO_BUCKET, ROOT, compose_config
from tests.images import PHOTO_SHAPES, write_photo_files
from tests.sagemaker_transform_replay import replay_transform_job
from tests.serving_support import export_untrained_model

ROLE = "arn:aws:iam::123456789012:role/dogbreed-endpoint"
S3_MODEL = "model_data=s3://b/m.tar.gz"
TRANSFORM = ["transform.input=s3://in-bucket/images/", "transform.output=s3://out-bucket/answers/"]
# The handler with the network as exported, on one thread: the same floats as load_model().predict.
EXACT = [
    "endpoint.environment.DOGBREED_ENGINE=torch",
    "endpoint.environment.DOGBREED_OPTIMIZE=none",
    "endpoint.environment.DOGBREED_THREADS=1",
]


def deploy_config(run_dir: Path, overrides: list[str]):
    return compose_config(run_dir, ["backend=sagemaker", *overrides], config_name="deploy")


def dry_run(run_dir: Path, overrides: list[str]) -> list[dict]:
    cfg = deploy_config(run_dir, ["backend.dry_run=true", f"backend.role={ROLE}", *overrides])
    return run_batch_transform(cfg) if cfg.transform.input else deploy_endpoint(cfg)


# ---------------------------------------------------------------------------------------------- dry run
def test_serverless_dry_run_requests_are_botocore_valid(no_aws, tmp_path, capsys):
    requests = dry_run(
        tmp_path,
        [
            S3_MODEL,
            "endpoint_name=dogbreed-serverless",
            "endpoint.serverless.enabled=true",
            "endpoint.serverless.memory_size_mb=4096",
            "endpoint.serverless.max_concurrency=20",
            "endpoint.instance_type=ml.g4dn.xlarge",  # not used: serverless is CPU only
        ],
    )
    assert json.loads(capsys.readouterr().out) == requests
    assert [r["operation"] for r in requests] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    model, config, endpoint = (r["request"] for r in requests)
    assert model["PrimaryContainer"]["Image"].endswith("/pytorch-inference:2.6-cpu-py312")
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "dogbreed-serverless",
            "InitialVariantWeight": 1,
            "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 20},
        }
    ]
    assert endpoint["EndpointConfigName"] == "dogbreed-serverless"
    assert request_problems(requests) == []


def test_transform_dry_run_requests_are_botocore_valid(no_aws, tmp_path, capsys):
    requests = dry_run(
        tmp_path,
        [
            S3_MODEL,
            *TRANSFORM,
            "backend.bucket=my-bucket",
            "transform.job_name=dogbreed-batch",
            "transform.instance_type=ml.c5.xlarge",
            "transform.instance_count=2",
            "transform.max_concurrent_transforms=4",
            "transform.max_payload_mb=10",
            "endpoint.environment.DOGBREED_TOPK=3",
        ],
    )
    assert json.loads(capsys.readouterr().out) == requests
    assert json.loads((tmp_path / "transform_requests.json").read_text()) == requests
    assert [r["operation"] for r in requests] == ["CreateModel", "CreateTransformJob"]
    model, job = (r["request"] for r in requests)
    # The same model as an endpoint's: the archive given code/, the entry point, the handler's settings.
    container = model["PrimaryContainer"]
    assert model["ModelName"] == "dogbreed-batch"
    assert container["ModelDataUrl"] == "s3://my-bucket/dogbreed/models/dogbreed-batch/model.tar.gz"
    assert container["Image"].endswith("/pytorch-inference:2.6-cpu-py312")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["DOGBREED_TOPK"] == "3"

    assert job["TransformJobName"] == job["ModelName"] == "dogbreed-batch"
    # One S3 object is one request (no splitting), sent as an image; each answer is its own <key>.out.
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://in-bucket/images/"}},
        "ContentType": "application/x-image",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath": "s3://out-bucket/answers/",
        "AssembleWith": "None",
        "Accept": "application/json",
    }
    assert job["BatchStrategy"] == "SingleRecord"
    assert job["TransformResources"] == {"InstanceCount": 2, "InstanceType": "ml.c5.xlarge"}
    assert (job["MaxPayloadInMB"], job["MaxConcurrentTransforms"]) == (10, 4)
    assert job["Environment"] == {
        "DOGBREED_MAX_BODY_BYTES": str(10 * 2**20)
    }  # the handler takes what it gets
    assert {"Key": "project", "Value": "dogbreed"} in job["Tags"]
    assert not (tmp_path / "model.tar.gz").exists()  # model_data was not downloaded either

    assert request_problems(requests) == []
    # ... and the check means something: botocore's model refuses a malformed request.
    broken = copy.deepcopy(requests)
    del broken[1]["request"]["TransformInput"]["DataSource"]
    broken[1]["request"]["MaxPayloadInMB"] = "10"
    (problem,) = request_problems(broken)
    assert "DataSource" in problem and "MaxPayloadInMB" in problem


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["endpoint.serverless.memory_size_mb=1000"],
            "endpoint.serverless.memory_size_mb=1000 is not allowed: use 1024, 2048, 3072, 4096, 5120 or",
        ),
        (
            ["endpoint.serverless.memory_size_mb=7168"],
            "endpoint.serverless.memory_size_mb=7168 is not allowed",
        ),
        (
            ["endpoint.serverless.memory_size_mb=lots"],
            "endpoint.serverless.memory_size_mb=lots is not a whole",
        ),
        (
            ["endpoint.serverless.max_concurrency=0"],
            "endpoint.serverless.max_concurrency=0 is not allowed: use",
        ),
        (
            ["endpoint.serverless.max_concurrency=201"],
            "endpoint.serverless.max_concurrency=201 is not allowed",
        ),
        (
            ["endpoint.serverless.enabled=true", "endpoint.autoscaling.enabled=true"],
            "a serverless endpoint scales itself",
        ),
        (["transform.input=/data/images"], "transform.input=/data/images is not allowed: use an S3 folder"),
        (["transform.input=s3://in/images/"], "transform.input is set but transform.output is not"),
        ([*TRANSFORM, "transform.output=answers/"], "transform.output=answers/ is not allowed"),
        ([*TRANSFORM, "transform.max_payload_mb=101"], "transform.max_payload_mb=101 is not allowed"),
        ([*TRANSFORM, "transform.instance_count=0"], "transform.instance_count=0 is not allowed"),
        (
            [*TRANSFORM, "transform.max_concurrent_transforms=0"],
            "transform.max_concurrent_transforms=0 is not",
        ),
        (
            [*TRANSFORM, "transform.instance_type=ml.t2.huge"],
            "unknown instance type transform.instance_type=ml.t2.huge",
        ),
        ([*TRANSFORM, "transform.job_name=-bad_name"], "transform.job_name=-bad_name is not valid"),
    ],
)
def test_bad_values_are_one_line_errors_before_anything_is_made(
    no_aws, monkeypatch, tmp_path, overrides, message
):
    # Credentials but a closed endpoint: anything that really went out would fail with another error.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    cfg = deploy_config(tmp_path, [S3_MODEL, f"backend.role={ROLE}", "backend.bucket=b", *overrides])
    run = run_batch_transform if cfg.transform.input else deploy_endpoint
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        run(cfg)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "model.tar.gz").exists()


def test_a_failed_transform_job_ends_with_its_reason_in_one_line():
    # moto's transform jobs complete at once: the Failed answer comes from botocore's Stubber.
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    failed = {
        "TransformJobName": "dogbreed-bad",
        "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/dogbreed-bad",
        "TransformJobStatus": "Failed",
        "FailureReason": "ClientError: See job logs for more information\n(a record was answered 400)",
        "ModelName": "dogbreed-bad",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}},
        "TransformOutput": {"S3OutputPath": "s3://b/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": now,
    }
    with Stubber(client) as stubber:
        stubber.add_response("describe_transform_job", failed, {"TransformJobName": "dogbreed-bad"})  # waiter
        stubber.add_response("describe_transform_job", failed, {"TransformJobName": "dogbreed-bad"})  # reason
        with pytest.raises(TransformJobError) as raised:
            wait_until_done(client, "dogbreed-bad")
        stubber.assert_no_pending_responses()
    assert str(raised.value) == (
        "transform job dogbreed-bad ended Failed: ClientError: See job logs for more information (a record"
        " was answered 400) (answers written so far are in s3://b/out/; the job's log is in CloudWatch, log"
        " group /aws/sagemaker/TransformJobs)"
    )


@pytest.mark.slow  # two fresh interpreters importing Hydra and the SDK
def test_deploy_py_runs_a_transform_dry_run_and_refuses_a_bad_value_in_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_REGION": "eu-west-1",
        "PYTHONPATH": str(ROOT / "src"),
    }

    def deploy(*overrides: str, run_dir: Path) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "serve/deploy.py",
            "backend=sagemaker",
            *overrides,
            f"hydra.run.dir={run_dir}",
        ]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    done = deploy(
        "backend.dry_run=true", "model_data=s3://b/k/model.tar.gz", *TRANSFORM, run_dir=tmp_path / "a"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    requests = json.loads((tmp_path / "a" / "transform_requests.json").read_text())
    assert [r["operation"] for r in requests] == ["CreateModel", "CreateTransformJob"]

    failed = deploy(
        "backend.dry_run=true",
        "model_data=s3://b/k/model.tar.gz",
        "endpoint.serverless.enabled=true",
        "endpoint.serverless.max_concurrency=500",
        run_dir=tmp_path / "b",
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        "error: endpoint.serverless.max_concurrency=500 is not allowed: use from 1 to 200"
    )
    assert "Traceback" not in failed.stderr


# ------------------------------------------------------------------------------------------------- moto
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    return export_untrained_model(tmp_path_factory.mktemp("transform") / "model")


def moto_config(run_dir: Path, overrides: list[str]):
    return deploy_config(
        run_dir, [f"backend.role={ROLE}", f"backend.bucket={MOTO_BUCKET}", "backend.prefix=moto", *overrides]
    )


def test_serverless_endpoint_deploy_and_teardown_against_moto(aws, model_dir, tmp_path, capsys):
    name = "dogbreed-moto-serverless"
    overrides = [f"model_dir={model_dir}", f"endpoint_name={name}", "endpoint.serverless.enabled=true"]
    described = deploy_endpoint(moto_config(tmp_path / "deploy", overrides))
    assert described["EndpointStatus"] == "InService"
    assert f"python serve/predict.py dog.jpg --endpoint {name}" in capsys.readouterr().out

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "InstanceType" not in variant

    deleted = teardown_endpoint(
        moto_config(tmp_path / "teardown", ["teardown=true", f"endpoint_name={name}"])
    )
    assert deleted == [f"endpoint:{name}", f"endpoint-config:{name}", f"model:{name}"]


@pytest.mark.slow  # the handler service runs in a process of its own, as in the container
def test_batch_transform_over_ten_images_writes_the_local_predictors_answers(
    aws, model_dir, tmp_path, capsys
):
    photos = write_photo_files(tmp_path / "photos")
    assert len(photos) == len(PHOTO_SHAPES) == 10
    for photo in photos:
        aws.upload_file(str(photo), MOTO_BUCKET, f"batch/images/{photo.name}")
    aws.put_object(Bucket=MOTO_BUCKET, Key="batch/elsewhere/not-this.jpg", Body=photos[0].read_bytes())

    name = "dogbreed-moto-transform"
    transform = [
        f"model_dir={model_dir}",
        f"transform.input=s3://{MOTO_BUCKET}/batch/images/",
        f"transform.output=s3://{MOTO_BUCKET}/batch/answers/",
        f"transform.job_name={name}",
        *EXACT,
    ]
    described = run_batch_transform(moto_config(tmp_path / "run", transform))
    assert described["TransformJobStatus"] == "Completed"  # moto's jobs complete at once
    assert f"aws s3 ls s3://{MOTO_BUCKET}/batch/answers/" in capsys.readouterr().out
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")

    written = replay_transform_job(name, sagemaker, aws, tmp_path / "replay")
    listed = aws.list_objects_v2(Bucket=MOTO_BUCKET, Prefix="batch/answers/")["Contents"]
    assert (
        sorted(o["Key"] for o in listed) == sorted(written) == [f"batch/answers/{p.name}.out" for p in photos]
    )

    expected = load_model(model_dir).predict(photos, topk=5)
    for photo, local in zip(photos, expected, strict=True):
        body = aws.get_object(Bucket=MOTO_BUCKET, Key=f"batch/answers/{photo.name}.out")["Body"].read()
        (answer,) = json.loads(body)["predictions"]
        assert [(t["index"], t["class_name"], t["label"]) for t in answer["topk"]] == [
            (p.index, p.class_name, p.label) for p in local
        ]
        assert [t["probability"] for t in answer["topk"]] == pytest.approx(
            [p.probability for p in local], abs=1e-6
        )
    # The images differ, and so do the answers: ten answers, not one repeated.
    assert len({json.dumps(json.loads(r["body"])) for r in written.values()}) == 10
