"""logger=mlflow against a real local MLflow store, read back with its own client; tuning as nested runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.training.fit import fit
from dogbreed.tuning.study import run_study
from tests.conftest import ROOT, TINY, compose_config

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def runs_of(uri: str, experiment: str = "dogbreed") -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_fit_logs_params_metrics_artifacts_and_model_to_a_local_store(shapes3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's default artifact folder (./mlruns) is relative to here
    uri = store(tmp_path)
    cfg = compose_config(
        tmp_path / "run",
        [
            *TINY,
            f"data.root={shapes3}",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "logger=[csv,mlflow]",
            f"logger.mlflow.tracking_uri={uri}",
        ],
    )
    summary = fit(cfg)

    (run,) = runs_of(uri)
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED"
    params = run.data.params
    # The resolved config, flattened.
    assert params["model/arch"] == "resnet18" and params["data/batch_size"] == "16"
    assert params["trainer/max_epochs"] == "2" and params["data/root"] == str(shapes3)
    epochs = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(epochs) == 2  # one value per epoch
    assert len(client.get_metric_history(run.info.run_id, "train/loss_step")) > 2  # and per step
    assert run.data.metrics["test/acc"] == pytest.approx(summary["test/acc"])
    assert run.data.metrics["test/mean_class_accuracy"] == pytest.approx(summary["mean_class_accuracy"])
    assert run.data.tags["dogbreed.data_sha256"] == fit_manifest_hash(tmp_path / "run")
    assert run.data.tags["mlflow.source.git.commit"]

    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded")))
    assert {"manifest.json", "config.yaml", "metrics.json"} <= {p.name for p in local.iterdir()}
    with open(local / "evaluation" / "per_class_accuracy.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert (local / "evaluation" / "confusion_matrix.png").is_file()
    from dogbreed.modeldir.reader import load_model

    # The exported model is the run's MLflow model, its folder as SageMaker serves it inside.
    (logged,) = client.search_logged_models([run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id and logged.name == "model"
    mlflow_model = mlflow.artifacts.download_artifacts(
        f"models:/{logged.model_id}", dst_path=str(tmp_path / "mlflow-model"), tracking_uri=uri
    )
    folder = Path(mlflow_model) / "artifacts" / "model"
    model = load_model(folder)  # the exported model, loadable from what MLflow holds
    assert model.class_names == summary_class_names(tmp_path / "run")
    assert (folder / "README.md").is_file() and (folder / "code" / "inference.py").is_file()
    assert (Path(mlflow_model) / "MLmodel").is_file()
    # Several loggers at once: the CSV logger wrote its file as before.
    assert (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").is_file()


def fit_manifest_hash(run_dir: Path) -> str:
    import json

    return json.loads((run_dir / "manifest.json").read_text())["data"]["sha256"]


def summary_class_names(run_dir: Path) -> list[str]:
    import json

    return json.loads((run_dir / "model" / "model.json").read_text())["class_names"]


@pytest.mark.slow
def test_a_tuning_study_is_a_parent_run_with_nested_trial_runs(shapes3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = store(tmp_path)
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            f"data.root={shapes3}",
            "data.images_per_class=8",
            "model.freeze=head",
            "search=smoke",
            "trainer.max_epochs=1",
            "tune.n_trials=2",
            "tune.pruner=null",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={uri}",
        ],
        config_name="tune",
    )
    cfg.search = {"model.lr": {"type": "categorical", "choices": [1.0e-3, 3.0e-3]}}
    study = run_study(cfg)

    runs = runs_of(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 3 and len(parents) == 1
    (parent,) = parents
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["optuna.trial"] for r in trials) == ["0", "1"]
    assert sorted(r.data.params["model/lr"] for r in trials) == sorted(
        str(t.params["model.lr"]) for t in study.trials
    )
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    assert parent.data.params["tune/n_trials"] == "2" and parent.info.status == "FINISHED"

    # Resumed with one more trial: the new trial joins the same parent run.
    cfg.tune.n_trials = 3
    run_study(cfg)
    runs = runs_of(uri)
    assert len(runs) == 4
    assert sum(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in runs) == 3


@pytest.mark.slow
def test_without_mlflow_a_run_is_as_before_and_logger_mlflow_names_the_extra(shapes3, tmp_path):
    # MLflow made unimportable in the process, as when the extra is not installed.
    hide = "import sys, runpy; sys.modules['mlflow'] = None; sys.argv[0] = 'train.py'; "
    hide += "runpy.run_path('train.py', run_name='__main__')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = str(ROOT / "src")

    def train(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                hide,
                *TINY,
                f"data.root={shapes3}",
                "data.images_per_class=8",
                "trainer.max_epochs=1",
                *overrides,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    plain = train(f"hydra.run.dir={tmp_path / 'plain'}")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert (tmp_path / "plain" / "model" / "README.md").is_file()
    assert (tmp_path / "plain" / "logs" / "version_0" / "metrics.csv").is_file()

    with_mlflow = train(f"hydra.run.dir={tmp_path / 'mlflow'}", "logger=mlflow")
    assert with_mlflow.returncode == 2
    errors = [line for line in with_mlflow.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install -e '.[mlflow]'" in errors[0], with_mlflow.stderr[-2000:]
    assert "Traceback" not in with_mlflow.stderr


def test_rule_reports_and_outputs_of_a_run_dir_become_artifacts(tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger

    from dogbreed.tracking.mlflow_run import finish_mlflow_runs

    run_dir = tmp_path / "run"
    files = ["manifest.json", "metrics.json", "rule_summary.json", "diagnostics_report.html"]
    files += ["debug/rule_outcomes.json", "profile/summary.json", "evaluation/per_class_accuracy.csv"]
    for name in files:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("{}")
    uri = store(tmp_path)
    logger = MLFlowLogger(
        tracking_uri=uri, experiment_name="dogbreed", artifact_location=str(tmp_path / "art")
    )
    finish_mlflow_runs([logger], run_dir, model_dir=None, summary={"mean_class_accuracy": 0.5})

    client = MlflowClient(uri)
    listed = {a.path for a in client.list_artifacts(logger.run_id)}
    assert {"manifest.json", "metrics.json", "evaluation", "diagnostics"} <= listed and "model" not in listed
    diagnostics = {a.path for a in client.list_artifacts(logger.run_id, "diagnostics")}
    assert {"diagnostics/diagnostics_report.html", "diagnostics/rule_summary.json"} <= diagnostics
    assert {"diagnostics/debug", "diagnostics/profile"} <= diagnostics
    assert client.get_run(logger.run_id).data.metrics["test/mean_class_accuracy"] == 0.5


def test_a_sagemaker_tracking_server_arn_is_a_tracking_uri(no_aws, tmp_path):
    """The sagemaker-mlflow plugin (in the mlflow extra) makes the ARN a store MLflow knows; no request goes
    out before the run logs, so nothing here reaches AWS."""
    from dogbreed.tracking.mlflow_run import instantiate_logger

    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/dogbreed"
    logger = instantiate_logger(
        compose_config(tmp_path, ["logger=mlflow", f"logger.mlflow.tracking_uri={arn}"]).logger.mlflow
    )
    assert logger.save_dir is None  # a remote store, not a local folder
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="unsupported URI 'nosuchscheme"):
        instantiate_logger(
            compose_config(
                tmp_path, ["logger=mlflow", "logger.mlflow.tracking_uri=nosuchscheme://x"]
            ).logger.mlflow
        )
