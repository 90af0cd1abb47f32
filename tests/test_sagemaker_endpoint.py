"""deploy.py backend=sagemaker: dry-run requests field by field, a real deploy and teardown against moto
(S3 upload, model, endpoint config, endpoint, Application Auto Scaling), and one-line setup errors."""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from dogbreed.sagemaker.endpoint import (
    EndpointError,
    deploy_endpoint,
    teardown_endpoint,
    wait_until_in_service,
)
from dogbreed.sagemaker.session import SageMakerSetupError
from tests.aws_requests import request_problems
from tests.conftest import CLOSED_PORT, MOTO_BUCKET, ROOT, compose_config

BUCKET = MOTO_BUCKET  # the `aws` fixture creates it on the moto server
ROLE = "arn:aws:iam::123456789012:role/dogbreed-endpoint"

SCALING = [
    "endpoint.autoscaling.enabled=true",
    "endpoint.autoscaling.min_instances=2",
    "endpoint.autoscaling.max_instances=5",
    "endpoint.autoscaling.target_invocations_per_instance=250",
    "endpoint.autoscaling.scale_in_cooldown_s=600",
    "endpoint.autoscaling.scale_out_cooldown_s=30",
]
SCALING_TARGET = {
    "ServiceNamespace": "sagemaker",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


S3_MODEL = "model_data=s3://b/m.tar.gz"


def deploy_config(run_dir: Path, overrides: list[str]):
    return compose_config(run_dir, ["backend=sagemaker", *overrides], config_name="deploy")


def operations(requests: list[dict]) -> list[str]:
    return [r["operation"] for r in requests]


def archive_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return set(tar.getnames())


# ---------------------------------------------------------------------------------------------- dry run
def test_dry_run_prints_model_endpoint_and_autoscaling_requests(no_aws, tmp_path, capsys):
    model_data = "s3://training-out/dogbreed-job/output/model.tar.gz"
    cfg = deploy_config(
        tmp_path,
        [
            "backend.dry_run=true",
            f"backend.role={ROLE}",
            "backend.bucket=my-bucket",
            "backend.prefix=dogs",
            f"model_data={model_data}",
            "endpoint_name=dogbreed-test",
            "endpoint.instance_type=ml.c5.xlarge",
            "endpoint.initial_instance_count=2",
            "endpoint.environment.DOGBREED_TOPK=3",
            "+backend.tags.team=vision",
            *SCALING,
        ],
    )
    requests = deploy_endpoint(cfg)

    assert json.loads(capsys.readouterr().out) == requests
    assert json.loads((tmp_path / "endpoint_requests.json").read_text()) == requests
    assert operations(requests) == [
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    ]
    model, config, endpoint, target, policy = (r["request"] for r in requests)

    assert model["ModelName"] == "dogbreed-test" and model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    assert re.fullmatch(
        r"\d+\.dkr\.ecr\.eu-west-1\.amazonaws\.com/pytorch-inference:2\.6-cpu-py312", container["Image"]
    )
    # model_data is given this project's code/ and uploaded under the endpoint's name (not sent: a dry run).
    assert container["ModelDataUrl"] == "s3://my-bucket/dogs/models/dogbreed-test/model.tar.gz"
    env = container["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert env["SAGEMAKER_REGION"] == "eu-west-1"
    assert (
        env["DOGBREED_TOPK"] == "3"
        and env["DOGBREED_DEVICE"] == "auto"
        and env["DOGBREED_OPTIMIZE"] == "fuse"
    )
    assert env["DOGBREED_MAX_BODY_BYTES"] == str(6 * 2**20)
    assert "DOGBREED_THREADS" not in env  # server.threads=null: the handler shares the CPUs between workers
    assert {"Key": "team", "Value": "vision"} in model["Tags"]

    assert config["EndpointConfigName"] == "dogbreed-test"
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "dogbreed-test",
            "InitialVariantWeight": 1,
            "InitialInstanceCount": 2,
            "InstanceType": "ml.c5.xlarge",
        }
    ]
    assert endpoint["EndpointName"] == "dogbreed-test" and endpoint["EndpointConfigName"] == "dogbreed-test"

    resource = {"ResourceId": "endpoint/dogbreed-test/variant/AllTraffic", **SCALING_TARGET}
    assert target == {**resource, "MinCapacity": 2, "MaxCapacity": 5}
    assert policy == {
        **resource,
        "PolicyName": "dogbreed-test-invocations-per-instance",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 250.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": 600,
            "ScaleOutCooldown": 30,
        },
    }
    assert not (tmp_path / "model.tar.gz").exists()  # model_data was not downloaded either
    assert request_problems(requests) == []  # what botocore's model of both APIs accepts


@pytest.mark.slow  # needs the shared tiny training run
def test_dry_run_packs_a_local_model_dir_and_names_everything_after_the_endpoint(
    no_aws, trained_run, tmp_path
):
    model_dir = tmp_path / "exported"
    shutil.copytree(trained_run / "model", model_dir)
    (model_dir / "code" / "user-note.txt").write_text("mine")  # a dry run must not rewrite the model dir
    cfg = deploy_config(
        tmp_path,
        [
            "backend.dry_run=true",
            f"model_dir={model_dir}",
            "endpoint.instance_type=ml.g4dn.xlarge",
        ],
    )
    requests = deploy_endpoint(cfg)
    assert (model_dir / "code" / "user-note.txt").read_text() == "mine"

    assert operations(requests) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]  # no autoscaling
    model, config, endpoint = (r["request"] for r in requests)
    name = endpoint["EndpointName"]
    assert re.fullmatch(r"dogbreed-\d{4}(-\d+){6}", name)  # endpoint.base_name + a timestamp
    assert model["ModelName"] == config["EndpointConfigName"] == endpoint["EndpointConfigName"] == name
    assert config["ProductionVariants"][0]["ModelName"] == name
    assert model["PrimaryContainer"]["Image"].endswith("/pytorch-inference:2.6-gpu-py312")  # a GPU instance
    assert (
        model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://set-backend-bucket/dogbreed/models/{name}/model.tar.gz"
    )
    # The archive that would be uploaded is in the run dir, with the entry point and the package in code/.
    names = archive_names((tmp_path / "model.tar.gz").read_bytes())
    assert {"weights.pt", "model.json", "code/inference.py", "code/requirements.txt"} <= names
    assert "code/dogbreed/serving/handler.py" in names and "code/user-note.txt" not in names


@pytest.mark.parametrize("autoscaled", [True, False])
def test_dry_run_teardown_lists_the_delete_calls(no_aws, monkeypatch, tmp_path, capsys, autoscaled):
    monkeypatch.delenv("SAGEMAKER_BUCKET", raising=False)  # deleting uploads nothing: no bucket needed
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    overrides = ["backend.dry_run=true", "teardown=true", "endpoint_name=dogbreed-old"]
    requests = teardown_endpoint(deploy_config(tmp_path, overrides + (SCALING if autoscaled else [])))

    assert json.loads(capsys.readouterr().out) == requests
    assert json.loads((tmp_path / "teardown_requests.json").read_text()) == requests
    resource = {"ResourceId": "endpoint/dogbreed-old/variant/AllTraffic", **SCALING_TARGET}
    scaling = [
        {
            "operation": "DeleteScalingPolicy",
            "request": {"PolicyName": "dogbreed-old-invocations-per-instance", **resource},
        },
        {"operation": "DeregisterScalableTarget", "request": resource},
    ]
    assert requests == (scaling if autoscaled else []) + [
        {"operation": "DeleteEndpoint", "request": {"EndpointName": "dogbreed-old"}},
        {"operation": "DeleteEndpointConfig", "request": {"EndpointConfigName": "dogbreed-old"}},
        {"operation": "DeleteModel", "request": {"ModelName": "dogbreed-old"}},
    ]


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([S3_MODEL], "no IAM role: set backend.role="),
        ([], "nothing to deploy: set model_dir=runs/train/<run>/model"),
        (["model_dir=EMPTY"], "holds no model.json: it is not an exported model"),
        (["model_dir=EMPTY", S3_MODEL], "give model_dir or model_data, not both"),
        (["model_data=/local/model.tar.gz"], "model_data must be an s3://.../model.tar.gz URI"),
        (
            [S3_MODEL, "endpoint.instance_type=ml.m5.huge"],
            "unknown instance type endpoint.instance_type=ml.m5.huge",
        ),
        ([S3_MODEL, "endpoint.framework_version=2.8"], "Unsupported pytorch version: 2.8"),
        (
            [S3_MODEL, "endpoint.autoscaling.enabled=true", "endpoint.autoscaling.max_instances=0"],
            "1 <= min_instances <= max_instances",
        ),
        ([S3_MODEL, "endpoint_name=-bad_name"], "endpoint name '-bad_name' is not valid"),
        (["teardown=true"], "teardown=true needs endpoint_name=<name>"),
    ],
)
def test_setup_errors_are_one_line_and_come_before_any_call(
    no_aws, monkeypatch, tmp_path, overrides, message
):
    # Credentials but a closed endpoint: anything that really went out would fail with another error.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    (tmp_path / "empty").mkdir()
    overrides = [o.replace("EMPTY", str(tmp_path / "empty")) for o in overrides]
    if "no IAM role" not in message:
        overrides.append(f"backend.role={ROLE}")
    cfg = deploy_config(tmp_path, ["backend.bucket=b", *overrides])
    run = teardown_endpoint if cfg.teardown else deploy_endpoint
    with pytest.raises(SageMakerSetupError, match=re.escape(message)) as raised:
        run(cfg)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "model.tar.gz").exists()


def test_an_endpoint_that_fails_ends_the_deploy_with_its_reason_in_one_line():
    # moto's endpoints are InService at once: the Failed answer comes from botocore's Stubber.
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    failed = {
        "EndpointName": "dogbreed-bad",
        "EndpointConfigName": "dogbreed-bad",
        "EndpointStatus": "Failed",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogbreed-bad",
        "FailureReason": "The primary container for production variant AllTraffic did not pass the ping\n"
        "health check.",
        "CreationTime": now,
        "LastModifiedTime": now,
    }
    with Stubber(client) as stubber:
        stubber.add_response("describe_endpoint", failed, {"EndpointName": "dogbreed-bad"})  # the waiter
        stubber.add_response("describe_endpoint", failed, {"EndpointName": "dogbreed-bad"})  # its reason
        with pytest.raises(EndpointError) as raised:
            wait_until_in_service(client, "dogbreed-bad")
        stubber.assert_no_pending_responses()
    assert str(raised.value) == (
        "endpoint dogbreed-bad did not come up: The primary container for production variant AllTraffic"
        " did not pass the ping health check. (remove it with python serve/deploy.py backend=sagemaker"
        " teardown=true endpoint_name=dogbreed-bad)"
    )


# ------------------------------------------------------------------------------------------------- moto
def moto_config(run_dir: Path, overrides: list[str]):
    return deploy_config(
        run_dir,
        [
            f"backend.role={ROLE}",
            f"backend.bucket={BUCKET}",
            "backend.prefix=moto",
            *overrides,
        ],
    )


def missing(call, **kwargs) -> bool:
    with pytest.raises(ClientError, match="Could not find"):
        call(**kwargs)
    return True


@pytest.mark.slow  # needs the shared tiny training run
def test_deploy_from_model_dir_with_autoscaling_then_teardown(aws, trained_run, tmp_path, capsys):
    name = "dogbreed-moto"
    cfg = moto_config(
        tmp_path / "deploy", [f"model_dir={trained_run / 'model'}", f"endpoint_name={name}", *SCALING]
    )
    described = deploy_endpoint(cfg)
    printed = capsys.readouterr().out

    # The packed model is in S3 under the endpoint's name, with code/ (entry point and package) inside.
    key = f"moto/models/{name}/model.tar.gz"
    names = archive_names(aws.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert {"weights.pt", "model.json", "code/inference.py", "code/dogbreed/serving/handler.py"} <= names

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    assert described["EndpointName"] == name and described["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["ExecutionRoleArn"] == ROLE
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        name,
        "ml.m5.large",
        1,
    )

    scaling = boto3.client("application-autoscaling", region_name="us-east-1")
    resource = f"endpoint/{name}/variant/AllTraffic"
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 5)
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling" and tracking["TargetValue"] == 250.0
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )

    # How to query it with raw bytes, and how to remove it.
    assert (
        f"aws sagemaker-runtime invoke-endpoint --region us-east-1 --endpoint-name {name} "
        "--content-type image/jpeg --accept application/json --body fileb://dog.jpg out.json"
    ) in printed
    assert f"python serve/predict.py dog.jpg --endpoint {name}" in printed

    # The same name again is refused before anything is uploaded.
    aws.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(SageMakerSetupError, match=f"SageMaker endpoint named {name} already exists"):
        deploy_endpoint(
            moto_config(tmp_path / "again", [f"model_dir={trained_run / 'model'}", f"endpoint_name={name}"])
        )
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET, Prefix=key)

    deleted = teardown_endpoint(
        moto_config(tmp_path / "teardown", ["teardown=true", f"endpoint_name={name}"])
    )
    assert deleted == [
        f"autoscaling:{resource}",
        f"endpoint:{name}",
        f"endpoint-config:{name}",
        f"model:{name}",
    ]
    assert missing(sagemaker.describe_endpoint, EndpointName=name)
    assert missing(sagemaker.describe_endpoint_config, EndpointConfigName=name)
    assert missing(sagemaker.describe_model, ModelName=name)
    assert name not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    assert not scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert not scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]


@pytest.mark.slow  # needs the shared tiny training run
def test_training_job_output_in_s3_is_given_code_and_deployed(aws, trained_run, tmp_path):
    # A training job's model.tar.gz: the exported model at the root, no code/.
    job_output = tmp_path / "output.tar.gz"
    with tarfile.open(job_output, "w:gz") as tar:
        for name in ("weights.pt", "model.json"):
            tar.add(trained_run / "model" / name, arcname=name)
    aws.upload_file(str(job_output), BUCKET, "jobs/dogbreed-1/output/model.tar.gz")

    model_data = f"s3://{BUCKET}/jobs/dogbreed-1/output/model.tar.gz"
    cfg = moto_config(
        tmp_path / "deploy", [f"model_data={model_data}", "endpoint_name=from-job", "endpoint.wait=false"]
    )
    deploy_endpoint(cfg)

    repacked = "moto/models/from-job/model.tar.gz"
    names = archive_names(aws.get_object(Bucket=BUCKET, Key=repacked)["Body"].read())
    assert {"weights.pt", "model.json", "code/inference.py", "code/requirements.txt"} <= names
    model = boto3.client("sagemaker", region_name="us-east-1").describe_model(ModelName="from-job")
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{repacked}"
    teardown_endpoint(moto_config(tmp_path / "teardown", ["teardown=true", "endpoint_name=from-job"]))


def test_teardown_of_an_unknown_endpoint_names_it(aws, tmp_path):
    cfg = moto_config(tmp_path, ["teardown=true", "endpoint_name=no-such-endpoint"])
    with pytest.raises(
        SageMakerSetupError, match="^no endpoint named no-such-endpoint in us-east-1: nothing to"
    ):
        teardown_endpoint(cfg)


def test_unreadable_model_data_is_named(aws, tmp_path):
    cfg = moto_config(tmp_path, [f"model_data=s3://{BUCKET}/nothing/here/model.tar.gz", "endpoint_name=x1"])
    with pytest.raises(
        SageMakerSetupError, match=f"model_data=s3://{BUCKET}/nothing/here/model.tar.gz cannot be read"
    ):
        deploy_endpoint(cfg)


# ------------------------------------------------------------------------------------------ entry point
@pytest.mark.slow  # two fresh interpreters importing Hydra and the SDK
def test_deploy_py_dry_run_and_one_line_error(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_REGION": "eu-west-1",
        "PYTHONPATH": str(ROOT / "src"),
    }

    def deploy(*overrides: str, run_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "serve/deploy.py", "backend=sagemaker", *overrides, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = deploy(
        "backend.dry_run=true",
        "model_data=s3://b/k/model.tar.gz",
        "endpoint_name=cli",
        run_dir=tmp_path / "a",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    requests = json.loads((tmp_path / "a" / "endpoint_requests.json").read_text())
    assert operations(requests) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]

    failed = deploy("backend.bucket=b", "model_data=s3://b/k/model.tar.gz", run_dir=tmp_path / "b")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: no AWS credentials")
    assert "Traceback" not in failed.stderr


ANSWER = {
    "predictions": [{"topk": [{"index": 3, "class_name": "004.Akita", "label": "Akita", "probability": 0.9}]}]
}


def json_body(data: dict):
    from botocore.response import StreamingBody

    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def region_from_aws_region(aws, monkeypatch):
    """Only AWS_REGION names the region (as the README's export does): boto3 alone would find none."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a default session made under this environment
    assert boto3.Session().region_name is None
    return "eu-west-1"


def test_predict_py_calls_an_endpoint_in_the_region_aws_region_names(
    region_from_aws_region, tmp_path, capsys
):
    sys.path.insert(0, str(ROOT / "serve"))
    try:
        from predict import main
    finally:
        sys.path.remove(str(ROOT / "serve"))
    calls = []

    def reply(model, params, request_signer, **kwargs):  # moto cannot answer InvokeEndpoint with a body
        from botocore.awsrequest import AWSResponse

        calls.append((request_signer.region_name, params["url_path"], params["body"]))
        return AWSResponse(None, 200, {}, None), {
            "Body": json_body(ANSWER),
            "ContentType": "application/json",
        }

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-call.sagemaker-runtime.InvokeEndpoint", reply)
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not decoded here")
    assert main([str(image), "--endpoint", "dogbreed-endpoint"]) == 0
    assert calls == [("eu-west-1", "/endpoints/dogbreed-endpoint/invocations", image.read_bytes())]
    assert "Akita" in capsys.readouterr().out


def test_breed_predictor_takes_the_region_aws_region_names(region_from_aws_region):
    from dogbreed.sagemaker.endpoint import breed_predictor

    predictor = breed_predictor("dogbreed-endpoint")
    assert predictor.sagemaker_session.boto_region_name == region_from_aws_region
    with Stubber(predictor.sagemaker_session.sagemaker_runtime_client) as stub:
        expected = {"EndpointName": "dogbreed-endpoint", "Body": b"\xff\xd8\xff", "ContentType": "image/jpeg"}
        stub.add_response(
            "invoke_endpoint",
            {"Body": json_body(ANSWER), "ContentType": "application/json"},
            {**expected, "Accept": "application/json"},
        )
        assert predictor.predict(b"\xff\xd8\xff") == ANSWER


def without_region(environ: dict, tmp_path: Path) -> dict:
    env = {k: v for k, v in environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")}
    return {**env, "AWS_CONFIG_FILE": str(tmp_path / "no-config")}


@pytest.mark.slow  # a fresh interpreter
def test_predict_py_without_a_region_is_one_line_saying_how_to_set_it(tmp_path):
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")
    result = subprocess.run(
        [sys.executable, "serve/predict.py", str(image), "--endpoint", "dogbreed-endpoint"],
        cwd=ROOT,
        env=without_region(dict(os.environ), tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "export AWS_REGION=<region>" in result.stderr


def test_breed_predictor_without_a_region_says_how_to_set_it(monkeypatch, tmp_path):
    from dogbreed.config.aws import NoRegionError
    from dogbreed.sagemaker.endpoint import breed_predictor

    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(NoRegionError, match="export AWS_REGION=<region>"):
        breed_predictor("dogbreed-endpoint")
