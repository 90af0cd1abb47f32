"""tune.py backend=sagemaker pieces: search space -> ranges, the tuning request, best params read back."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber
from omegaconf import OmegaConf

from dogbreed.backends.sagemaker import (
    SageMakerSetupError,
    best_params,
    launch_tuning,
    make_session,
    search_space_to_sagemaker,
    write_best_params,
)
from tests.conftest import compose_config

SEARCH_SPACE = """\
model.lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
model.dropout: {type: float, low: 0.0, high: 0.5}
model.head_hidden: {type: int, low: 0, high: 512}
model.freeze: {type: categorical, choices: [all, layer4, head]}
"""


@pytest.fixture
def space(tmp_path) -> dict:
    path = tmp_path / "search.yaml"
    path.write_text(SEARCH_SPACE)
    return OmegaConf.to_container(OmegaConf.load(path))


def tuning_request(tmp_path, space, extra=()) -> dict:
    overrides = ["backend=sagemaker", "backend.dry_run=true", "experiment=smoke", "model.lr=1e-3", *extra]
    return launch_tuning(compose_config(tmp_path, overrides), overrides, space)


def test_dry_run_tuning_request_matches_the_search_space_and_objective(no_aws, tmp_path, space, capsys):
    request = tuning_request(
        tmp_path, space, ["backend.tuning.max_jobs=8", "backend.tuning.max_parallel_jobs=4"]
    )
    assert (
        json.loads(capsys.readouterr().out)["HyperParameterTuningJobName"]
        == request["HyperParameterTuningJobName"]
    )

    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 4}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val/acc"}
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert continuous["model.lr"] == {
        "Name": "model.lr", "MinValue": "1e-05", "MaxValue": "0.01", "ScalingType": "Logarithmic"
    }  # fmt: skip
    assert continuous["model.dropout"]["ScalingType"] == "Linear"
    (integer,) = ranges["IntegerParameterRanges"]
    assert (integer["Name"], integer["MinValue"], integer["MaxValue"]) == ("model.head_hidden", "0", "512")
    (categorical,) = ranges["CategoricalParameterRanges"]
    assert [json.loads(v) for v in categorical["Values"]] == ["all", "layer4", "head"]

    definition = request["TrainingJobDefinition"]
    static = {k: json.loads(v) for k, v in definition["StaticHyperParameters"].items()}
    assert static["experiment"] == "smoke" and "model.lr" not in static  # tuned, so not fixed
    assert not [k for k in static if k.startswith("backend")]
    metric_names = [d["Name"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "val/acc" in metric_names


def test_hyperband_strategy_turns_sagemaker_early_stopping_off(no_aws, tmp_path, space):
    hyperband = ["backend.tuning.strategy=Hyperband", "backend.tuning.direction=minimize"]
    request = tuning_request(tmp_path, space, [*hyperband, "backend.tuning.objective=val/loss"])
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband" and config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["StrategyConfig"]["HyperbandStrategyConfig"] == {"MinResource": 1, "MaxResource": 10}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "val/loss"}


def test_objective_must_be_a_printed_metric(no_aws, tmp_path, space):
    with pytest.raises(SageMakerSetupError, match="objective=val/accuracy is not a metric"):
        tuning_request(tmp_path, space, ["backend.tuning.objective=val/accuracy"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "float", "low": 1.0}, "model.lr: missing 'high'"),
        ({"type": "float", "low": 1.0, "high": 0.1}, "model.lr: low=1.0 must be below high=0.1"),
        ({"type": "uniform", "low": 0, "high": 1}, "model.lr: type must be float, int or categorical"),
    ],
)
def test_bad_search_space_entries_are_named(entry, message):
    with pytest.raises(SageMakerSetupError, match=message):
        search_space_to_sagemaker({"model.lr": entry})


def test_best_training_job_becomes_overrides_train_py_takes(no_aws, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    session = make_session(compose_config(tmp_path, ["backend=sagemaker", "backend.bucket=b"]).backend)
    # moto answers every tuning job with a canned best job, so the answer is stubbed here.
    with Stubber(session.sagemaker_client) as stubber:
        stubber.add_response(
            "describe_hyper_parameter_tuning_job",
            {
                "HyperParameterTuningJobName": "dogbreed-tune",
                "HyperParameterTuningJobArn": "arn:aws:sagemaker:eu-west-1:1:hyper-parameter-tuning-job/t",
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian",
                    "ResourceLimits": {"MaxParallelTrainingJobs": 1},
                },
                "HyperParameterTuningJobStatus": "Completed",
                "CreationTime": "2026-11-22T05:00:00Z",
                "TrainingJobStatusCounters": {},
                "ObjectiveStatusCounters": {},
                "BestTrainingJob": {
                    "TrainingJobName": "dogbreed-tune-007-abc",
                    "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:1:training-job/dogbreed-tune-007-abc",
                    "CreationTime": "2026-11-22T05:00:00Z",
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": {"model.lr": "0.00031", "model.freeze": '"layer4"'},
                },
            },
            {"HyperParameterTuningJobName": "dogbreed-tune"},
        )
        job, overrides = best_params(session, "dogbreed-tune")
    assert job == "dogbreed-tune-007-abc"
    assert overrides == ["model.freeze=layer4", "model.lr=0.00031"]
    path = write_best_params(tmp_path / "best_params.yaml", job, overrides)
    read_back = OmegaConf.to_container(OmegaConf.load(path))
    cfg = compose_config(tmp_path, read_back)  # train.py accepts them as they are
    assert cfg.model.lr == pytest.approx(0.00031) and cfg.model.freeze == "layer4"


def test_tune_py_backend_sagemaker_dry_run_uses_the_search_file_and_the_local_objective(no_aws, tmp_path):
    # The real entry point, as a user runs it: one search file and one objective for both tuners.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    run_dir = tmp_path / "tune"
    result = subprocess.run(
        [
            sys.executable, "tune.py", "backend=sagemaker", "backend.dry_run=true", "data=embedded",
            "tune.objective=val/loss", f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    request = json.loads((run_dir / "tuning_job_request.json").read_text())
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "val/loss"}
    ranges = config["ParameterRanges"]
    lr = next(r for r in ranges["ContinuousParameterRanges"] if r["Name"] == "model.lr")
    assert (lr["MinValue"], lr["MaxValue"], lr["ScalingType"]) == ("1e-05", "0.1", "Logarithmic")
    assert [r["Name"] for r in ranges["IntegerParameterRanges"]] == ["trainer.max_epochs"]
    metric_names = {
        m["Name"] for m in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert "val/loss" in metric_names
