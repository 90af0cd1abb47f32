"""train.py inside a SageMaker job: argv and SM_* -> Hydra overrides, and a real run through the toolkit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.config.job_environment import JobEnvironment, in_sagemaker_job
from dogbreed.config.overrides import (
    decode_hyperparameter,
    hyperparameters_from_overrides,
    overrides_from_hyperparameters,
)
from dogbreed.sagemaker.container.distributed import distributed_environment
from dogbreed.sagemaker.container.entry import sagemaker_argv
from dogbreed.sagemaker.container.overrides import (
    ChannelLayoutError,
    argv_to_overrides,
    container_overrides,
    data_root_from_channels,
)

TOOLKIT_TRAIN = Path(sys.executable).parent / "train"  # the sagemaker-training toolkit's entry point


def job_of(environ: dict[str, str]) -> JobEnvironment:
    return JobEnvironment.from_environ(environ)


def test_script_mode_argv_becomes_hydra_overrides():
    hyperparameters = hyperparameters_from_overrides(["model.lr=3e-4", "+trainer.x=[1,2]", "~logger"])
    argv = [arg for key, value in hyperparameters.items() for arg in (f"--{key}", value)]
    assert argv_to_overrides(argv) == ["model.lr=3e-4", "+trainer.x=[1,2]", "~logger"]
    assert argv_to_overrides(["--a.b=1", "c=2"]) == ["a.b=1", "c=2"]
    with pytest.raises(ValueError, match="--model.lr has no value"):
        argv_to_overrides(["--model.lr"])


def test_outside_sagemaker_argv_is_untouched():
    assert sagemaker_argv(["train.py", "--x", "1"], job_of({})) == [
        "train.py",
        "--x",
        "1",
    ]


def test_the_job_environment_is_parsed_once_into_one_object(tmp_path):
    env = {
        "SM_TRAINING_ENV": json.dumps({"job_name": "job-b"}),
        "SM_HPS": json.dumps({"model.lr": 0.1}),
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_HOSTS": '["algo-2", "algo-1"]',
        "SM_CURRENT_HOST": "algo-2",
        "SAGEMAKER_BASE_DIR": str(tmp_path),
    }
    job = job_of(env)
    assert job.inside_job and in_sagemaker_job(env) and not in_sagemaker_job({})
    assert job.job_name == "job-b" and job.hyperparameters == {"model.lr": 0.1}
    assert job.channels == {"train": Path("/opt/ml/input/data/train")}
    assert job.model_dir == Path("/opt/ml/model") and job.base_dir == tmp_path
    assert job.hosts == ("algo-1", "algo-2") and job.current_host == "algo-2"
    # SageMaker's own TRAINING_JOB_NAME wins over the toolkit's copy; broken JSON reads as absent.
    other = job_of({**env, "TRAINING_JOB_NAME": "job-c", "SM_HOSTS": "[", "SM_HPS": "{"})
    assert other.job_name == "job-c" and other.hosts == () and other.hyperparameters == {}
    assert not job_of({}).inside_job


def test_channels_named_after_the_splits_give_their_parent(tmp_path):
    env = {f"SM_CHANNEL_{s.upper()}": str(tmp_path / "data" / s) for s in ("train", "valid", "test")}
    assert data_root_from_channels(job_of(env)) == tmp_path / "data"


def test_one_channel_holding_the_splits_or_a_folder_of_them(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / "data" / "dogImages" / split).mkdir(parents=True)
    assert (
        data_root_from_channels(job_of({"SM_CHANNEL_DATA": str(tmp_path / "data")}))
        == tmp_path / "data" / "dogImages"
    )
    nested = tmp_path / "data" / "dogImages"
    assert data_root_from_channels(job_of({"SM_CHANNEL_TRAINING": str(nested)})) == nested
    with pytest.raises(ChannelLayoutError, match=r"\['a', 'b'\]"):
        data_root_from_channels(job_of({"SM_CHANNEL_A": "/x", "SM_CHANNEL_B": "/y"}))


def test_container_places_outputs_and_resumes_only_its_own_checkpoint(tmp_path):
    env = {
        "SAGEMAKER_BASE_DIR": str(tmp_path),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "TRAINING_JOB_NAME": "job-a",
    }
    job = ["trainer.enable_progress_bar=true", "model.lr=0.01"]
    placed = dict(o.split("=", 1) for o in container_overrides(job, job_of(env)))
    assert placed["backend"] == "sagemaker_job" and placed["model_dir"] == str(tmp_path / "model")
    own = tmp_path / "checkpoints" / "job-a"  # one folder per job under the synced location
    assert placed["callbacks.last_checkpoint.dirpath"] == str(own)
    assert "trainer.enable_progress_bar" not in placed and "ckpt_path" not in placed
    (own / "last.ckpt").write_bytes(b"a checkpoint")  # an empty one is a finished trial's, never resumed
    # A spot restart: same job, same hyperparameters -> resumes.
    placed = dict(o.split("=", 1) for o in container_overrides(job, job_of(env)))
    assert placed["ckpt_path"] == str(own / "last.ckpt")
    # Written with other hyperparameters -> not resumed, moved aside (kept), and the job starts fresh.
    placed = dict(o.split("=", 1) for o in container_overrides(["model.lr=0.1"], job_of(env)))
    assert "ckpt_path" not in placed
    assert (tmp_path / "checkpoints" / "job-a.foreign-1" / "last.ckpt").is_file()
    assert not (own / "last.ckpt").exists()


def test_each_host_of_a_multi_instance_job_gets_its_node_rank():
    env = {
        "SM_TRAINING_ENV": "{}",
        "SM_HOSTS": '["algo-2", "algo-1"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
    }
    assert distributed_environment(job_of(env)) == {
        "NODE_RANK": "1",
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "7777",
        "GLOO_SOCKET_IFNAME": "eth0",
    }
    elsewhere = job_of({**env, "SAGEMAKER_BASE_DIR": "/nonexistent"})
    assert "++trainer.num_nodes=2" in container_overrides([], elsewhere)
    alone = {**env, "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}
    assert distributed_environment(job_of(alone)) == {}


def test_a_tuning_jobs_own_hyperparameters_are_not_hydra_overrides():
    hyperparameters = {"_tuning_objective_metric": "val/acc", "sagemaker_program": "x.py", "model.lr": 0.1}
    assert overrides_from_hyperparameters(hyperparameters) == ["model.lr=0.1"]


def test_hyperparameters_as_the_sdk_encodes_them_or_the_tuner_sends_them_decode_to_the_same_override():
    # The SDK JSON-encodes a framework estimator's values; the tuning service sends tuned values raw.
    sdk = {k: json.dumps(v) for k, v in {"model.lr": 0.001, "model.scheduler": "cosine", "x": None}.items()}
    raw = {"model.lr": "0.001", "model.scheduler": "cosine", "x": "null"}
    for sent in (sdk, raw):
        decoded = {k: decode_hyperparameter(v) for k, v in sent.items()}
        assert decoded == {"model.lr": 0.001, "model.scheduler": "cosine", "x": None}
        assert overrides_from_hyperparameters(decoded) == [
            "model.lr=0.001",
            "model.scheduler=cosine",
            "x=null",
        ]


def fake_opt_ml(base: Path, data: Path, hyperparameters: dict[str, str], source: Path) -> dict[str, str]:
    """/opt/ml as SageMaker lays it out for a job, with the data as train/valid/test channels."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    write_hyperparameters(base, hyperparameters, source)
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "localhost", "hosts": ["localhost"], "network_interface_name": "lo"})
    )
    channels = ("train", "valid", "test")
    (config / "inputdataconfig.json").write_text(
        json.dumps({c: {"TrainingInputMode": "File"} for c in channels})
    )
    for channel in channels:
        shutil.copytree(data / channel, base / "input" / "data" / channel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "PYTHONPATH"))}
    return {**env, "SAGEMAKER_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1"}


def write_hyperparameters(base: Path, hyperparameters: dict[str, str], source: Path) -> None:
    # SageMaker's hyperparameters.json holds JSON-encoded strings, as the SDK sends them.
    encoded = {k: json.dumps(v) for k, v in hyperparameters.items()}
    encoded.update(
        sagemaker_program=json.dumps("train.py"), sagemaker_submit_directory=json.dumps(str(source))
    )
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(encoded))


def run_toolkit(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(TOOLKIT_TRAIN)], env=env, capture_output=True, text=True, timeout=600)


def test_a_tuning_trial_keeps_its_best_checkpoint_out_of_the_sync_and_empties_its_own_at_the_end(tmp_path):
    from dogbreed.sagemaker.container.resume import (
        best_checkpoint_dir,
        checkpoint_dir,
        other_jobs_checkpoints,
        release_checkpoints,
        resumable_checkpoint,
    )

    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    # As the service writes it: the objective among the trial's hyperparameters (SM_HPS leaves it out).
    (config / "hyperparameters.json").write_text(json.dumps({"_tuning_objective_metric": "val/acc"}))
    environ = {"SM_MODEL_DIR": str(tmp_path / "model"), "SAGEMAKER_BASE_DIR": str(tmp_path)}
    trial = job_of({**environ, "TRAINING_JOB_NAME": "tune-001"})
    assert trial.tuning_objective == "val/acc"
    assert best_checkpoint_dir(trial) == tmp_path / "output" / "best-checkpoints"  # never uploaded
    own = checkpoint_dir(trial)
    own.mkdir(parents=True)
    (own / "last.ckpt").write_bytes(b"weights" * 100)
    (own / "job.json").write_text(json.dumps({"overrides": ["model.lr=0.1"]}))
    later = job_of({**environ, "TRAINING_JOB_NAME": "tune-002"})
    assert other_jobs_checkpoints(later) == ["tune-001"]

    assert release_checkpoints(trial) == [own / "last.ckpt"]
    assert (own / "last.ckpt").stat().st_size == 0  # the sync uploads the empty version over the big one
    assert json.loads((own / "job.json").read_text()) == {"overrides": ["model.lr=0.1"], "finished": True}
    assert other_jobs_checkpoints(later) == []
    assert resumable_checkpoint(own, ["model.lr=0.1"], claim=False) is None

    (config / "hyperparameters.json").write_text(json.dumps({"model.lr": "0.1"}))
    plain = job_of({**environ, "TRAINING_JOB_NAME": "train-001"})
    assert plain.tuning_objective is None and best_checkpoint_dir(plain) == checkpoint_dir(plain)
    checkpoint_dir(plain).mkdir()
    (checkpoint_dir(plain) / "last.ckpt").write_bytes(b"w")
    assert release_checkpoints(plain) == [] and (checkpoint_dir(plain) / "last.ckpt").read_bytes() == b"w"
