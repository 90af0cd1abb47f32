"""tune.py backend=sagemaker pieces: search space -> ranges, the tuning request, best params read back."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from dogbreed.sagemaker.results import best_values
from dogbreed.sagemaker.session import SageMakerSetupError
from dogbreed.sagemaker.tuning_job import launch_tuning, static_train_overrides
from dogbreed.tuning.report import train_overrides, write_best_files
from dogbreed.tuning.search_space import SearchSpaceError
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
    overrides = [
        "backend=sagemaker",
        "backend.dry_run=true",
        "experiment=smoke",
        "model.lr=1e-3",
        "tune.objective=val/acc",
        *extra,
    ]
    return launch_tuning(compose_config(tmp_path, overrides, "tune"), overrides, space)


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
        "Name": "model.lr",
        "MinValue": "1e-05",
        "MaxValue": "0.01",
        "ScalingType": "Logarithmic",
    }
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
    hyperband = ["backend.tuning.strategy=Hyperband", "tune.direction=minimize"]
    request = tuning_request(tmp_path, space, [*hyperband, "tune.objective=val/loss"])
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband" and config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["StrategyConfig"]["HyperbandStrategyConfig"] == {"MinResource": 1, "MaxResource": 10}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "val/loss"}


def test_objective_must_be_a_printed_metric(no_aws, tmp_path, space):
    with pytest.raises(SageMakerSetupError, match="tune.objective=val/accuracy is not a metric"):
        tuning_request(tmp_path, space, ["tune.objective=val/accuracy", "tune.direction=maximize"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "float", "low": 1.0}, "parameter model.lr: type float needs high"),
        ({"type": "float", "low": 1.0, "high": 0.1}, "parameter model.lr: low=1.0 is greater than high=0.1"),
        ({"type": "uniform", "low": 0, "high": 1}, "parameter model.lr: unknown type 'uniform'"),
        ({"type": "float", "low": 0.1, "high": 0.5, "step": 0.1}, "model.lr: step=0.1 cannot be sent"),
    ],
)
def test_bad_search_space_entries_are_named(no_aws, tmp_path, entry, message):
    with pytest.raises(SearchSpaceError, match=message):
        tuning_request(tmp_path, {"model.lr": entry})


def test_tune_only_and_tuned_keys_leave_the_training_jobs_static_overrides():
    overrides = [
        "backend=sagemaker",
        "search=smoke",
        "tune.objective=val/acc",
        "+tune.extra=1",
        "experiment=smoke",
        "model.lr=1e-3",
        "model.dropout=0.1",
        "searchlight=1",
    ]
    static = static_train_overrides(overrides, {"model.lr": None})
    assert static == ["backend=sagemaker", "experiment=smoke", "model.dropout=0.1", "searchlight=1"]


def test_overrides_a_training_job_would_refuse_stop_the_launch():
    from dogbreed.sagemaker.training_job import check_job_overrides

    check_job_overrides(["experiment=smoke", "model.lr=0.1", "backend=sagemaker"])  # train.py takes these
    with pytest.raises(SageMakerSetupError, match=r"would refuse its hyperparameters.*'search'"):
        check_job_overrides(["search=smoke"])


def test_best_training_job_gives_the_local_tuners_best_files(tmp_path):
    # What DescribeHyperParameterTuningJob answers for a finished job (values JSON-encoded by the SDK).
    described = {
        "HyperParameterTuningJobName": "dogbreed-tune",
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "experiment": '"smoke"',
                "model.dropout": '"0.1"',
                "_tuning_objective_metric": "val/acc",
                "sagemaker_program": '"train.py"',
            },
        },
        "BestTrainingJob": {
            "TrainingJobName": "dogbreed-tune-007-abc",
            "TunedHyperParameters": {"model.lr": "0.00031", "model.freeze": '"layer4"'},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "Maximize",
                "MetricName": "val/acc",
                "Value": 0.9,
            },
        },
    }
    job, tuned, static = best_values(described)
    assert job == "dogbreed-tune-007-abc"
    assert tuned == {"model.freeze": "layer4", "model.lr": 0.00031}
    assert static == ["experiment=smoke", "model.dropout=0.1"]
    overrides = train_overrides(static, tuned)
    write_best_files(
        tmp_path,
        study_name="dogbreed-tune",
        direction="maximize",
        trial=job,
        value=0.9,
        params=tuned,
        user_attrs={},
        overrides=overrides,
    )
    lines = (tmp_path / "best_overrides.txt").read_text().split()
    cfg = compose_config(tmp_path, lines)  # train.py accepts them as they are
    assert cfg.model.lr == pytest.approx(0.00031) and cfg.model.freeze == "layer4"
    assert cfg.model.dropout == pytest.approx(0.1) and cfg.data.num_classes == 6  # the smoke experiment
    best = OmegaConf.to_container(OmegaConf.load(tmp_path / "best_params.yaml"))
    assert set(best) == {"study_name", "direction", "trial", "value", "params", "user_attrs", "overrides"}
    assert best["overrides"] == lines


def test_tune_py_backend_sagemaker_dry_run_uses_the_search_file_and_the_local_objective(no_aws, tmp_path):
    # The real entry point, as a user runs it: one search file and one objective for both tuners.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    run_dir = tmp_path / "tune"
    result = subprocess.run(
        [
            sys.executable,
            "tune.py",
            "backend=sagemaker",
            "backend.dry_run=true",
            "data=embedded",
            "search=default",
            "tune.objective=val/loss",
            "tune.n_trials=3",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    # Every training job gets train.py's config only: tune.py's own keys would kill it in Hydra.
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert json.loads(static["data"]) == "embedded"
    assert not [k for k in static if k.lstrip("+~").startswith(("search", "tune"))], static
