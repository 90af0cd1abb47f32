"""Replay a batch transform job the way SageMaker runs it, from the job as the launcher created it (read back
from moto) and the objects in moto's S3.

SageMaker starts the model's container with the model archive extracted to /opt/ml/model and the model's
and job's environment, then sends each object under the input prefix as one POST /invocations (SplitType
None: the object's bytes are the body) with the job's ContentType and Accept, and writes the response body
to the output prefix as <key relative to the input prefix>.out. Here the real inference handler service
answers (tests/sagemaker_handler_driver.py), in a process whose `dogbreed` comes from the archive's code/.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from tests.serving_support import through_sagemaker_handler


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _input_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def _model_dir(s3: Any, model_data_url: str, work: Path) -> Path:
    """/opt/ml/model: the model's archive as SageMaker extracts it."""
    archive = work / "model.tar.gz"
    s3.download_file(*split_s3(model_data_url), str(archive))
    model_dir = work / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def replay_transform_job(name: str, sagemaker: Any, s3: Any, work: Path) -> dict[str, dict]:
    """Run transform job `name` through the handler service; returns {output key: driver result} for the
    objects it wrote. A non-2xx answer fails a SageMaker transform job: it raises here."""
    work.mkdir(parents=True, exist_ok=True)
    job = sagemaker.describe_transform_job(TransformJobName=name)
    container = sagemaker.describe_model(ModelName=job["ModelName"])["PrimaryContainer"]
    model_dir = _model_dir(s3, container["ModelDataUrl"], work)
    source = job["TransformInput"]
    assert source.get("SplitType", "None") == "None", "one object, one request"
    in_bucket, prefix = split_s3(source["DataSource"]["S3DataSource"]["S3Uri"])
    out_bucket, out_prefix = split_s3(job["TransformOutput"]["S3OutputPath"])
    keys = _input_keys(s3, in_bucket, prefix)
    (work / "input").mkdir()
    requests = []
    for i, key in enumerate(keys):
        body = work / "input" / f"{i:04d}"
        s3.download_file(in_bucket, key, str(body))
        requests.append(
            {
                "body_file": str(body),
                "content_type": source.get("ContentType"),
                "accept": job["TransformOutput"].get("Accept"),
            }
        )
    env = {**container.get("Environment", {}), **job.get("Environment", {})}
    results = through_sagemaker_handler(model_dir, requests, work, env)["results"]
    written = {}
    for key, result in zip(keys, results, strict=True):
        if not 200 <= result["status"] < 300:
            raise RuntimeError(
                f"transform job {name} fails on {key}: {result['status']} {result['body'][:300]}"
            )
        out_key = "/".join(p for p in (out_prefix.rstrip("/"), key[len(prefix) :].lstrip("/")) if p) + ".out"
        s3.put_object(Bucket=out_bucket, Key=out_key, Body=result["body"].encode())
        written[out_key] = result
    return written
