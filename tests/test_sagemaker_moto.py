"""Real SageMaker and S3 API calls, answered by a moto server on 127.0.0.1 (AWS cannot be reached here)."""

from __future__ import annotations

import json

import boto3
import pytest
from omegaconf import OmegaConf

from dogbreed.sagemaker.training_job import launch_training
from dogbreed.sagemaker.tuning_job import launch_tuning
from tests.conftest import MOTO_BUCKET, TINY, compose_config

pytest.importorskip("moto.server")
BUCKET = MOTO_BUCKET  # the `aws` fixture (conftest.py) creates it on the moto server
ROLE = "arn:aws:iam::123456789012:role/dogbreed-moto"


def keys(s3, prefix: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["ETag"] for o in listed}


@pytest.mark.slow
def test_training_job_is_created_with_uploaded_data_and_source(aws, shapes3, tmp_path):
    overrides = [
        "backend=sagemaker",
        f"backend.role={ROLE}",
        f"backend.bucket={BUCKET}",
        "backend.prefix=moto",
        "backend.instance_type=ml.m5.large",
        "+backend.tags.run=moto",
        *TINY,
        f"data.root={shapes3}",
        "trainer.max_epochs=2",
    ]
    described = launch_training(compose_config(tmp_path / "a", overrides), overrides)

    data = keys(aws, "moto/data/shapes3/")
    assert len([k for k in data if k.endswith(".jpg")]) == 3 * (32 + 12 + 12)  # every image of the splits
    assert any(k.startswith("moto/data/shapes3/train/") for k in data)
    source = [k for k in keys(aws, "moto/code/") if k.endswith("sourcedir.tar.gz")]
    assert len(source) == 1

    job = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(
        TrainingJobName=described["TrainingJobName"]
    )
    assert job["RoleArn"] == ROLE and job["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    hyperparameters = {k: json.loads(v) for k, v in job["HyperParameters"].items()}
    assert hyperparameters["trainer.max_epochs"] == "2" and "data.root" not in hyperparameters
    assert hyperparameters["sagemaker_submit_directory"] == f"s3://{BUCKET}/{source[0]}"
    (channel,) = job["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/moto/data/shapes3"

    # A second run reuses the uploaded data instead of sending it again.
    first_etags = dict(data)
    aws.put_object(Bucket=BUCKET, Key=next(iter(data)), Body=b"changed in S3")
    launch_training(compose_config(tmp_path / "b", overrides), overrides)
    after = keys(aws, "moto/data/shapes3/")
    changed = next(iter(data))
    assert after[changed] != first_etags[changed], "the data was uploaded again instead of reused"


def test_tuning_job_is_created_and_described(aws, tmp_path):
    space = OmegaConf.create({"model.lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}})
    overrides = [
        "backend=sagemaker",
        f"backend.role={ROLE}",
        f"backend.bucket={BUCKET}",
        "experiment=smoke",
        "backend.tuning.max_jobs=3",
    ]
    cfg = compose_config(tmp_path, [*overrides, "tune.objective=val/acc"], "tune")
    described = launch_tuning(cfg, overrides, OmegaConf.to_container(space))
    config = described["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val/acc"}
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 3
    (lr,) = config["ParameterRanges"]["ContinuousParameterRanges"]
    assert lr["Name"] == "model.lr" and lr["ScalingType"] == "Logarithmic"
    assert "InputDataConfig" not in described["TrainingJobDefinition"]  # synthetic smoke data
