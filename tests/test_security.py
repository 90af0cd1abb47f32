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
FAKE_SECRET = "sk-fake-canary-0123456789abcdefSECRET"
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIACANARY0000000042",
    "AWS_SECRET_ACCESS_KEY": "canary-secret-access-key-0123456789abcdef",
    "AWS_SESSION_TOKEN": "canary-session-token-0123456789abcdef",
    # Any other variable: a run that saved or logged the whole environment would carry it.
    "DOGBREED_CANARY": "canary-plain-environment-variable-value",
    # One the runs read, through `${oc.env:FAKE_SECRET}` in an override: used, never written out.
    "FAKE_SECRET": FAKE_SECRET,
}
# A password inside a storage URL, given through the environment (DOGBREED_STUDY_DB) or typed.
STUDY_PASSWORD = "hunter2-SECRET"
TYPED_PASSWORD = "typed-pw-SECRET"
# Hydra's own record of the command line holds what was typed (docs: type references, not secrets).
HYDRA_RECORDS = {".hydra/overrides.yaml", ".hydra/hydra.yaml", ".hydra/config.yaml"}
# A URL carrying a secret from the environment, as a user would type it (the quotes keep it one value).
DATA_URL = "data.url='https://example.invalid/dogImages.zip?token=${oc.env:FAKE_SECRET}'"


def study_db(folder: Path) -> str:
    """A real SQLite study storage whose URL carries a password (SQLite ignores unknown URI parameters)."""
    return f"sqlite:///file:{folder / 'study.db'}?uri=true&password={STUDY_PASSWORD}"


def run(args: list[str], tmp_path: Path, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
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
    entry, *rest = args
    result = subprocess.run(
        [sys.executable, str(ROOT / entry), *rest],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def assert_no_secrets(
    run_dir: Path,
    result: subprocess.CompletedProcess,
    expected: set[str],
    typed: dict[str, set[str]] | None = None,
) -> None:
    """No canary in any file of the run (text or binary: checkpoints hold hyperparameters) or its output.

    `typed`: secrets typed on the command line, with the files allowed to hold them (Hydra's records)."""
    files = {p.relative_to(run_dir).as_posix(): p for p in run_dir.rglob("*") if p.is_file()}
    assert expected <= set(files), sorted(files)  # the files that matter were written and are searched
    canaries = {
        **{name: (value, set()) for name, value in SECRETS.items()},
        "study password": (STUDY_PASSWORD, set()),
    }
    canaries.update({value: (value, allowed) for value, allowed in (typed or {}).items()})
    leaks = [
        f"{name} in {where}"
        for where, data in [
            *((n, p.read_bytes()) for n, p in files.items()),
            ("stdout", result.stdout.encode()),
            ("stderr", result.stderr.encode()),
        ]
        for name, (value, allowed) in canaries.items()
        if value.encode() in data and where not in allowed
    ]
    assert not leaks


@pytest.mark.slow
def test_a_training_run_saves_and_logs_no_credentials_or_environment(shapes3, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    # The MLflow store's URL typed with a password (SQLite ignores the parameter; a server would not).
    store = f"sqlite:///file:{tmp_path / 'mlflow.db'}?uri=true&password={TYPED_PASSWORD}"
    args = [f"hydra.run.dir={run_dir}", f"data.root={shapes3}", *TINY, "data.images_per_class=8"]
    args += ["logger=[csv,mlflow]", f"logger.mlflow.tracking_uri='{store}'", DATA_URL]
    result = run(["train.py", *args, "trainer.max_epochs=1"], tmp_path, cwd=tmp_path)
    saved = {
        "run/config.yaml",
        "run/.hydra/config.yaml",
        "run/.hydra/hydra.yaml",
        "run/.hydra/overrides.yaml",
        "run/train.log",
        "run/metrics.json",
        "run/manifest.json",
        "run/checkpoints/last.ckpt",
        "run/model/weights.pt",
        "run/model/model.json",
        "run/model/README.md",
        "mlflow.db",  # the MLflow store and its artifacts (./mlruns) are searched too
    }
    typed = {TYPED_PASSWORD: {f"run/{name}" for name in HYDRA_RECORDS}}
    assert_no_secrets(tmp_path, result, saved, typed)
    assert "training for up to 1 epochs" in (run_dir / "train.log").read_text()  # the log is the real one

    client = MlflowClient(store)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("dogbreed").experiment_id])
    params, tags = mlflow_run.data.params, mlflow_run.data.tags
    # Records hold the override as typed, the reference unresolved, and a typed password masked.
    assert params["data/url"] == "https://example.invalid/dogImages.zip?token=${oc.env:FAKE_SECRET}"
    assert params["logger/mlflow/tracking_uri"] == store.replace(TYPED_PASSWORD, "***")
    assert not [v for v in [*params.values(), *tags.values()] if FAKE_SECRET in v or TYPED_PASSWORD in v]
    manifest = json.loads((run_dir / "model" / "model.json").read_text())["manifest"]
    assert DATA_URL.removeprefix("data.url=").strip("'") in " ".join(manifest["overrides"])


@pytest.mark.slow
def test_a_study_with_mlflow_saves_and_logs_no_credentials(shapes3, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run_dir, store = tmp_path / "tune", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [f"hydra.run.dir={run_dir}", f"data.root={shapes3}", *TINY, "data.images_per_class=8"]
    args += ["model.freeze=head", "search=smoke", "tune.n_trials=1", DATA_URL]
    args += ["logger=mlflow", f"logger.mlflow.tracking_uri={store}"]
    # The pattern docs/tuning.md recommends for a study database with a password.
    args += ["tune.storage='${oc.env:DOGBREED_STUDY_DB}'"]
    result = run(["tune.py", *args], tmp_path, cwd=tmp_path, DOGBREED_STUDY_DB=study_db(tmp_path))
    saved = {"tune/tune.log", "tune/best_overrides.txt", "tune/best_params.yaml", "tune/trials.csv"}
    saved |= {"tune/trials/0000/config.yaml", "tune/trials/0000/manifest.json", "study.db", "mlflow.db"}
    assert_no_secrets(tmp_path, result, saved)

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("dogbreed").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 2  # the study and its trial
    assert parent.data.params["tune/storage"] == "${oc.env:DOGBREED_STUDY_DB}"  # as typed
    # The tag that finds the study again names its database, the password masked.
    assert parent.data.tags["dogbreed.study"].endswith(study_db(tmp_path).replace(STUDY_PASSWORD, "***"))
    for mlflow_run in runs:
        values = [*mlflow_run.data.params.values(), *mlflow_run.data.tags.values()]
        assert not [v for v in values if FAKE_SECRET in v or STUDY_PASSWORD in v]


@pytest.mark.slow  # MLflow's SQLite store takes seconds to create
def test_a_study_run_records_a_typed_storage_password_masked_and_finds_its_run_again(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from dogbreed.tracking.mlflow_study import study_parent_run

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder (./mlruns)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    url = f"postgresql://tuner:{STUDY_PASSWORD}@db.internal/studies"
    overrides = ["logger=mlflow", f"logger.mlflow.tracking_uri={store}", f"tune.storage='{url}'"]
    cfg = compose_config(tmp_path, overrides, config_name="tune")
    with study_parent_run(cfg, "dogs", url) as parent:
        pass
    recorded = MlflowClient(store).get_run(parent.run_id).data
    assert recorded.params["tune/storage"] == "postgresql://tuner:***@db.internal/studies"
    assert recorded.tags["dogbreed.study"] == "dogs @ postgresql://tuner:***@db.internal/studies"
    assert not [v for v in [*recorded.params.values(), *recorded.tags.values()] if STUDY_PASSWORD in v]
    with study_parent_run(cfg, "dogs", url) as resumed:  # a resumed study joins the same run
        assert resumed.run_id == parent.run_id


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
    # Overrides reading the environment travel as typed; a tracking server's URL (with a password) is
    # passed on to the job's environment, and shown masked.
    args = [*args, DATA_URL, "logger=mlflow"]
    if entry == "tune.py":
        args.append("tune.storage='${oc.env:DOGBREED_STUDY_DB}'")
    result = run(
        [
            entry,
            "backend=sagemaker",
            "backend.dry_run=true",
            *args,
            "logger=mlflow",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        SAGEMAKER_ROLE=role,
        SAGEMAKER_BUCKET="bucket-from-environment",
        MLFLOW_TRACKING_URI=f"https://tracker:{STUDY_PASSWORD}@mlflow.example",
        DOGBREED_STUDY_DB=study_db(tmp_path),
    )
    request = json.loads((run_dir / request_file).read_text())
    job = request.get("TrainingJobDefinition", request)  # a tuning job holds its training job definition
    assert job["RoleArn"] == role
    hyperparameters = job.get("HyperParameters") or job["StaticHyperParameters"]
    assert "?token=${oc.env:FAKE_SECRET}" in hyperparameters["data.url"]
    assert job["Environment"]["MLFLOW_TRACKING_URI"] == "https://tracker:***@mlflow.example"
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://bucket-from-environment/dogbreed/output"
    assert_no_secrets(run_dir, result, {request_file, ".hydra/config.yaml", f"{entry[:-3]}.log"})


# An account id (12 digits), an ARN naming one, or a concrete S3 bucket.
ACCOUNT_SPECIFIC = re.compile(
    r"arn:aws:[\w-]*:[\w-]*:\d{12}|(?<![\w.])\d{12}(?![\w.])|s3://[a-z0-9][a-z0-9.-]+"
)
# The dry run's placeholder account (its requests show it where the real account would be).
# Placeholders that name no real account or bucket: the dry run's example role, and the role and code bucket
# SageMaker's local mode is given (it runs on this machine and reads neither).
ALLOWED = {
    ("src/dogbreed/sagemaker/dry_run.py", "123456789012"),
    ("src/dogbreed/sagemaker/local_mode.py", "arn:aws:iam::000000000000"),
    ("src/dogbreed/sagemaker/endpoint_local.py", "s3://local-mode-unused"),
}


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
    from dogbreed.config.secrets import mask_secrets
    from dogbreed.tuning.study import TuneConfigError, create_study

    url = "postgresql://optuna:s3cret-pw@db.internal:5432/studies"
    assert mask_secrets(url) == "postgresql://optuna:***@db.internal:5432/studies"
    create_study(compose_config(tmp_path, ["tune.objective=val/acc"], config_name="tune"))
    with pytest.raises(TuneConfigError, match=rf"in sqlite:///{tmp_path}/study\.db was created to maximize"):
        create_study(compose_config(tmp_path, ["tune.objective=val/loss"], config_name="tune"))
