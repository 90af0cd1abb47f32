"""Security defaults: nothing a run saves or logs holds credentials or the environment; the SageMaker role
and bucket come from config or environment, never from the code. (Where the server listens:
test_serving_config.py for the composed default, test_serving_under_load.py for the running server;
a missing role or bucket: test_sagemaker_launch.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLOSED_PORT, ROOT, TINY, compose_config

# Canaries in the environment of the runs below: none of these values may turn up in what they leave.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIACANARY0000000042",
    "AWS_SECRET_ACCESS_KEY": "canary-secret-access-key-0123456789abcdef",
    "AWS_SESSION_TOKEN": "canary-session-token-0123456789abcdef",
    # Any other variable: a run that saved or logged the whole environment would carry it.
    "DOGBREED_CANARY": "canary-plain-environment-variable-value",
}


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        **SECRETS,
        **env,
        "PYTHONPATH": str(ROOT / "src"),
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "DOGBREED_CACHE": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "cache" / "torch"),
    }
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def assert_no_secrets(run_dir: Path, result: subprocess.CompletedProcess, expected: set[str]) -> None:
    """No canary in any file of the run (text or binary: checkpoints hold hyperparameters) or its output."""
    files = {p.relative_to(run_dir).as_posix(): p for p in run_dir.rglob("*") if p.is_file()}
    assert expected <= set(files), sorted(files)  # the files that matter were written and are searched
    leaks = [
        f"{name} in {where}"
        for where, data in [
            *((n, p.read_bytes()) for n, p in files.items()),
            ("stdout", result.stdout.encode()),
            ("stderr", result.stderr.encode()),
        ]
        for name, value in SECRETS.items()
        if value.encode() in data
    ]
    assert not leaks


@pytest.mark.slow
def test_a_training_run_saves_and_logs_no_credentials_or_environment(shapes3, tmp_path):
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", f"data.root={shapes3}", *TINY, "data.images_per_class=8"]
    result = run(["train.py", *args, "trainer.max_epochs=1"], tmp_path)
    saved = {
        "config.yaml",
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
        ".hydra/overrides.yaml",
        "train.log",
        "metrics.json",
        "checkpoints/last.ckpt",
        "model/weights.pt",
        "model/model.json",
    }
    assert_no_secrets(run_dir, result, saved)
    assert "training for up to 1 epochs" in (run_dir / "train.log").read_text()  # the log is the real one


@pytest.mark.slow
@pytest.mark.parametrize(
    ("entry", "args", "request_file"),
    [
        ("train.py", ["experiment=smoke"], "training_job_request.json"),
        ("tune.py", ["data=embedded"], "tuning_job_request.json"),
    ],
)
def test_sagemaker_dry_run_takes_role_and_bucket_from_the_environment_and_saves_no_credentials(
    tmp_path, entry, args, request_file
):
    pytest.importorskip("sagemaker")
    role = "arn:aws:iam::111122223333:role/role-from-environment"
    run_dir = tmp_path / "launch"
    result = run(
        [entry, "backend=sagemaker", "backend.dry_run=true", *args, f"hydra.run.dir={run_dir}"],
        tmp_path,
        SAGEMAKER_ROLE=role,
        SAGEMAKER_BUCKET="bucket-from-environment",
    )
    request = json.loads((run_dir / request_file).read_text())
    job = request.get("TrainingJobDefinition", request)  # a tuning job holds its training job definition
    assert job["RoleArn"] == role
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://bucket-from-environment/dogbreed/output"
    assert_no_secrets(run_dir, result, {request_file, ".hydra/config.yaml", f"{entry[:-3]}.log"})


# An account id (12 digits), an ARN naming one, or a concrete S3 bucket.
ACCOUNT_SPECIFIC = re.compile(
    r"arn:aws:[\w-]*:[\w-]*:\d{12}|(?<![\w.])\d{12}(?![\w.])|s3://[a-z0-9][a-z0-9.-]+"
)
# The dry run's placeholder account (its requests show it where the real account would be).
ALLOWED = {("src/dogbreed/sagemaker/dry_run.py", "123456789012")}


def test_no_account_role_or_bucket_is_written_into_the_code_or_config():
    assert ACCOUNT_SPECIFIC.search("role=arn:aws:iam::111122223333:role/x")
    assert ACCOUNT_SPECIFIC.search("uri = 's3://my-bucket/data'")
    assert not ACCOUNT_SPECIFIC.search("f's3://{bucket}/{prefix}' s3://<bucket>/<prefix> 1.0e-12")
    files = [
        *ROOT.glob("*.py"),
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "serve").rglob("*.py"),
        *(ROOT / "conf").rglob("*.yaml"),
        *(p for p in (ROOT / "docker").rglob("*") if p.is_file()),
        ROOT / "pyproject.toml",
    ]
    found = {
        (path.relative_to(ROOT).as_posix(), match.group())
        for path in files
        for match in ACCOUNT_SPECIFIC.finditer(path.read_text(errors="replace"))
    }
    assert found - ALLOWED == set()
    assert ALLOWED <= found  # the scan does read the files


def test_a_study_database_password_is_masked_in_messages(tmp_path):
    from dogbreed.tuning import TuneConfigError, create_study, storage_for_messages

    url = "postgresql://optuna:s3cret-pw@db.internal:5432/studies"
    assert storage_for_messages(url) == "postgresql://optuna:***@db.internal:5432/studies"
    create_study(compose_config(tmp_path, ["tune.objective=val/acc"], config_name="tune"))
    with pytest.raises(TuneConfigError, match=rf"in sqlite:///{tmp_path}/study\.db was created to maximize"):
        create_study(compose_config(tmp_path, ["tune.objective=val/loss"], config_name="tune"))
