"""A planted checkpoint never runs code. Every reader of a checkpoint goes through one loader
(dogbreed.model.checkpoints.read_checkpoint, weights_only=True):
a file it refuses gets one `error:` line naming it,
and the run it was meant for is left as it was. A checkpoint this project writes loads through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
import torch
from hydra.utils import instantiate

from dogbreed.config.errors import user_error_message
from dogbreed.config.overrides import hyperparameters_from_overrides
from dogbreed.data.preprocessing import Preprocessing
from dogbreed.model.checkpoints import CheckpointError, read_checkpoint
from dogbreed.model.network import build_network, load_backbone_weights
from dogbreed.modeldir.format import ModelDirError
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model
from dogbreed.sagemaker.container.overrides import argv_to_overrides
from dogbreed.sagemaker.container.resume import CHECKPOINT_OWNER_FILE
from dogbreed.sagemaker.results import attach_training
from dogbreed.sagemaker.session import make_session
from dogbreed.sagemaker.source_bundle import stage_source
from dogbreed.training.checkpoint_io import AtomicCheckpointIO
from tests.conftest import ROOT, TINY, compose_config
from tests.sagemaker_replay import TINY_JOB
from tests.test_sagemaker_container import TOOLKIT_TRAIN, fake_opt_ml, run_toolkit
from tests.test_sagemaker_results import finished_job, targz


class Payload:
    """Unpickled without weights_only, it creates `marker`: the stand-in for any code an attacker plants."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> Path:
    """A file shaped like a Lightning checkpoint, with the payload where the loop counters would be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "loops": Payload(marker), "epoch": 0}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


def test_the_planted_payload_is_real_code(tmp_path, marker):
    # The control: the file the tests plant does run its code when unpickled the unsafe way.
    torch.load(plant(tmp_path / "last.ckpt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("mmap", [False, True])
def test_the_loader_refuses_a_payload_with_one_line_naming_the_file(tmp_path, marker, monkeypatch, mmap):
    path = plant(tmp_path / "last.ckpt", marker)
    # torch's own switch to turn weights_only off by default must not turn it off here.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path, mmap=mmap)
    assert not marker.exists()
    message = user_error_message(refused.value)
    assert message is not None and "\n" not in message
    assert message.startswith(f"{path} is refused: it holds pickled Python objects")
    assert "GLOBAL" in message  # what was refused: torch names the callable


def test_a_checkpoint_at_a_url_is_read_the_same_way(tmp_path, marker):
    # Any fsspec URL (s3://, https://, ...) as Lightning accepts them; fsspec's in-memory store stands in.
    fs = fsspec.filesystem("memory")
    fs.pipe("/planted/last.ckpt", plant(tmp_path / "last.ckpt", marker).read_bytes())
    with pytest.raises(CheckpointError, match=r"^memory://planted/last\.ckpt is refused"):
        read_checkpoint("memory://planted/last.ckpt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"^memory://absent\.ckpt: no such checkpoint file"):
        read_checkpoint("memory://absent.ckpt")


def test_damaged_or_foreign_files_are_refused_naming_the_file(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, whole)
    files = {
        "truncated.ckpt": whole.read_bytes()[: whole.stat().st_size // 2],
        "empty.ckpt": b"",
        "text.ckpt": b"not a checkpoint at all",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"^{tmp_path / name} is not a readable checkpoint"):
            read_checkpoint(tmp_path / name)
    torch.save([torch.ones(2)], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match=r"list\.ckpt is not a checkpoint: it holds a list"):
        read_checkpoint(tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match=r"absent\.ckpt: no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.ckpt")
    assert torch.equal(read_checkpoint(whole)["state_dict"]["w"], torch.ones(64, 64))


def test_lightnings_own_reads_go_through_the_loader(tmp_path, marker):
    # The trainer the real config builds: resume, test and validate with ckpt_path read through its
    # checkpoint plugin, whatever weights_only Lightning asks for (it asks for none, or False for a URL).
    trainer = instantiate(compose_config(tmp_path, TINY).trainer, logger=False, precision="32-true")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    path = plant(tmp_path / "last.ckpt", marker)
    for given in (path, f"file://{path}"):
        for weights_only in (None, False):
            with pytest.raises(CheckpointError, match="is refused"):
                trainer.strategy.load_checkpoint(given, weights_only=weights_only)
    assert not marker.exists()


def planted_model(model_dir: Path, marker: Path) -> Path:
    """A model folder as export writes it, its weights.pt replaced by the payload."""
    export_model(
        build_network("resnet18", 3),
        model_dir,
        arch="resnet18",
        class_names=["a", "b", "c"],
        preprocessing=Preprocessing(crop_size=32, resize_size=36),
    )
    plant(model_dir / "weights.pt", marker)
    return model_dir


def test_a_model_folder_and_model_weights_are_read_through_the_loader(tmp_path, marker):
    model_dir = planted_model(tmp_path / "model", marker)
    with pytest.raises(ModelDirError, match=rf"^{model_dir / 'weights.pt'} is refused"):
        load_model(model_dir)  # what evaluation, the servers and the SageMaker handler load with
    with pytest.raises(CheckpointError, match=r"^model\.weights=.*weights\.pt: .* is refused"):
        load_backbone_weights("resnet18", str(model_dir / "weights.pt"))
    assert not marker.exists()


@pytest.mark.slow  # moto and the SDK's launch
def test_attach_downloads_a_planted_model_without_loading_it_and_loading_it_refuses(aws, tmp_path, marker):
    job = finished_job(aws, tmp_path)
    planted = planted_model(tmp_path / "planted", marker)
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").partition("/")
    files = {name: (planted / name).read_bytes() for name in ("weights.pt", "model.json")}
    aws.put_object(Bucket=bucket, Key=key, Body=targz(files))
    cfg = compose_config(tmp_path / "attached", ["backend=sagemaker"])
    attach_training(cfg, make_session(cfg.backend, bucket_required=False), job["TrainingJobName"])
    attached = tmp_path / "attached" / "model"
    assert (attached / "weights.pt").read_bytes() == files["weights.pt"]
    assert not marker.exists()
    with pytest.raises(ModelDirError, match=rf"^{attached / 'weights.pt'} is refused"):
        load_model(attached)  # what evaluating or serving the attached model does first
    assert not marker.exists()


def train_py(args: list[str]) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.parametrize("finished", [True, False], ids=["with-metrics.json", "without-metrics.json"])
def test_train_py_refuses_a_planted_last_ckpt_and_leaves_the_run_as_it_was(
    shapes3, tmp_path, marker, finished
):
    run_dir = tmp_path / "run"
    last = plant(run_dir / "checkpoints" / "last.ckpt", marker)
    record = {"config.yaml": "seed: 1\n"}
    if finished:  # the reported case: a finished run's metrics.json beside it
        record["metrics.json"] = json.dumps({"train/loss": 1.0, "val/loss": 1.0, "test/loss": 1.0})
    for name, text in record.items():
        (run_dir / name).write_text(text)
    result = train_py([f"hydra.run.dir={run_dir}", "ckpt_path=last", f"data.root={shapes3}", *TINY])
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = error_lines(result)
    assert line.startswith(f"error: ckpt_path=last: {last} is refused: it holds pickled Python objects")
    assert line.endswith("or start fresh with ckpt_path=null")
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert {name: (run_dir / name).read_text() for name in record} == record
    assert not (run_dir / "manifest.json").exists() and not (run_dir / "model").exists()


@pytest.mark.slow
def test_a_checkpoint_given_as_a_url_is_refused_by_lightnings_read(shapes3, tmp_path, marker):
    # Not read ahead by fit(): Lightning's resume reads it, through the trainer's plugin.
    run_dir = tmp_path / "run"
    last = plant(tmp_path / "elsewhere" / "last.ckpt", marker)
    result = train_py([f"hydra.run.dir={run_dir}", f"ckpt_path=file://{last}", f"data.root={shapes3}", *TINY])
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = error_lines(result)
    assert line.startswith(f"error: file://{last} is refused: it holds pickled Python objects")
    assert not marker.exists()
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.skipif(not TOOLKIT_TRAIN.exists(), reason="sagemaker-training toolkit not installed")
def test_a_spot_restart_refuses_a_planted_last_ckpt_in_its_synced_checkpoints(shapes3, tmp_path, marker):
    job_overrides = [*TINY_JOB, "data.images_per_class=8", "trainer.max_epochs=1"]
    hyperparameters = hyperparameters_from_overrides(job_overrides)
    base = tmp_path / "opt_ml"
    env = fake_opt_ml(base, shapes3, hyperparameters, stage_source(tmp_path / "source"))
    env["TRAINING_JOB_NAME"] = "job-a"
    # What the bucket synced back: this job's own folder, claimed with this job's hyperparameters (a spot
    # restart resumes it), holding a planted last.ckpt.
    own = base / "checkpoints" / "job-a"
    last = plant(own / "last.ckpt", marker)
    argv = [arg for key, value in hyperparameters.items() for arg in (f"--{key}", value)]
    (own / CHECKPOINT_OWNER_FILE).write_text(json.dumps({"overrides": sorted(argv_to_overrides(argv))}))

    result = run_toolkit(env)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-3000:]
    assert f"ckpt_path={last}" in log  # it did try to resume
    assert f"error: ckpt_path={last}: {last} is refused: it holds pickled Python objects" in log
    assert not marker.exists()
    assert (
        not (base / "output" / "data" / "metrics.json").exists()
        and not (base / "model" / "weights.pt").exists()
    )


@pytest.mark.slow  # the shared tiny training run
def test_a_checkpoint_this_project_writes_needs_nothing_allow_listed(trained_run):
    paths = sorted((trained_run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in paths} >= {"last.ckpt"} and len(paths) == 2, paths  # last and the best
    for path in paths:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path
        checkpoint = read_checkpoint(path, mmap=True)
        assert {"state_dict", "loops"} <= set(checkpoint), path
        if path.name == "last.ckpt":  # what a resume reads: complete; the best one holds its weights only
            assert {"callbacks", "optimizer_states"} <= set(checkpoint), path
