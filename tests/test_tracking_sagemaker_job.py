"""A training job replayed through the SageMaker training toolkit logs to MLflow (a local store given by
config), names the job in its tags, carries the launcher's commit, and writes TensorBoard files where the
job's TensorBoardOutputConfig collects them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dogbreed.config.overrides import hyperparameters_from_overrides
from dogbreed.sagemaker.source_bundle import stage_source
from dogbreed.tracking.sagemaker_job import TENSORBOARD_DIR_VAR, job_environment
from tests.conftest import compose_config
from tests.sagemaker_replay import TINY_JOB
from tests.test_sagemaker_container import TOOLKIT_TRAIN, fake_opt_ml, run_toolkit

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
from mlflow.tracking import MlflowClient  # noqa: E402

JOB_NAME = "dogbreed-train-2026-01-01-00-00-00-000"
JOB_ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{JOB_NAME}"


@pytest.mark.slow
@pytest.mark.skipif(not TOOLKIT_TRAIN.exists(), reason="sagemaker-training toolkit not installed")
def test_a_job_logs_to_mlflow_with_its_name_and_the_launchers_commit(shapes3, tmp_path):
    uri = f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}"
    (tmp_path / "tracking").mkdir()
    job_overrides = [
        *TINY_JOB,
        "data.images_per_class=8",
        "trainer.max_epochs=1",
        "logger=[csv,mlflow,tensorboard]",
        f"logger.mlflow.tracking_uri={uri}",
        f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}",
    ]
    base = tmp_path / "opt_ml"
    source = stage_source(tmp_path / "source")  # a copy without .git, as a job receives it
    env = fake_opt_ml(base, shapes3, hyperparameters_from_overrides(job_overrides), source)
    # What the launcher adds (job_environment) and what SageMaker sets in every training container.
    launcher_commit = {"commit": "f" * 40, "dirty": False}
    logger_cfg = compose_config(tmp_path, ["logger=[csv,mlflow,tensorboard]"]).logger
    added = job_environment(launcher_commit, logger_cfg, environ={})
    added[TENSORBOARD_DIR_VAR] = str(base / "output" / "tensorboard")  # /opt/ml/... lives under the fake base
    env.update(added, TRAINING_JOB_NAME=JOB_NAME, TRAINING_JOB_ARN=JOB_ARN)

    result = run_toolkit(env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dogbreed").experiment_id])
    assert run.data.tags["sagemaker.training_job_name"] == JOB_NAME
    assert run.data.tags["sagemaker.training_job_arn"] == JOB_ARN
    assert run.data.tags["mlflow.source.git.commit"] == "f" * 40
    assert run.data.params["model/arch"] == "resnet18"
    assert run.data.params["model_dir"] == str(base / "model")  # the job's SM_MODEL_DIR
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 1
    # The exported model is the run's MLflow model, with the model folder as its artifacts.
    (logged,) = client.search_logged_models([run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.artifact_location, dst_path=str(tmp_path / "mlflow-model")
    )
    model_files = {p.name for p in (Path(downloaded) / "artifacts" / "model").iterdir()}
    assert {"weights.pt", "model.json", "README.md", "code"} <= model_files

    manifest = json.loads((base / "output" / "data" / "manifest.json").read_text())
    assert manifest["git"]["commit"] == "f" * 40 and manifest["sagemaker_job"]["arn"] == JOB_ARN
    assert json.loads((base / "model" / "model.json").read_text())["manifest"]["git"]["commit"] == "f" * 40
    assert list((base / "output" / "tensorboard").rglob("events.out.tfevents.*"))
