"""The run manifest and the model card: git state of a real repository, data fingerprints, SageMaker tags."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.data.embedded import generate_dataset
from dogbreed.data.folders import BreedImageFolder
from dogbreed.sagemaker.source_bundle import stage_source
from dogbreed.tracking.data_manifest import data_manifest
from dogbreed.tracking.git_state import git_state
from dogbreed.tracking.manifest import build_manifest
from dogbreed.tracking.model_card import write_model_card
from dogbreed.tracking.run_record import (
    RunRecord,
    new_run_record,
    read_run_record,
    write_run_metrics,
    write_run_record,
)
from dogbreed.tracking.sagemaker_job import (
    MLFLOW_REQUIREMENTS,
    TENSORBOARD_CONTAINER_DIR,
    job_environment,
    job_requirements,
    job_tags,
    job_tracking,
    mlflow_job_tags,
    running_job,
    tensorboard_output,
)
from tests.conftest import ROOT, TINY, compose_config


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "test")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_all(repo: Path, message: str = "snapshot") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_git_state_names_the_commit_and_hashes_the_diff(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "code.py").write_text("x = 1\n")
    head = commit_all(repo)

    clean = git_state(repo / ".", environ={})
    assert clean["commit"] == head and clean["dirty"] is False and clean["diff_sha256"] is None

    (repo / "code.py").write_text("x = 2\n")
    first = git_state(repo, environ={})
    (repo / "code.py").write_text("x = 3\n")
    second = git_state(repo, environ={})
    assert first["dirty"] and second["dirty"] and first["commit"] == head
    assert first["diff_sha256"] and second["diff_sha256"] and first["diff_sha256"] != second["diff_sha256"]

    (repo / "code.py").write_text("x = 1\n")
    (repo / "notes.txt").write_text("new\n")
    untracked = git_state(repo, environ={})
    assert untracked["dirty"] and untracked["diff_sha256"] is None and untracked["untracked"] == ["notes.txt"]


def test_outside_a_checkout_the_state_says_so_or_comes_from_the_launcher(tmp_path):
    outside = git_state(tmp_path, environ={})
    assert outside["git"] is False and "not a git checkout" in outside["reason"]
    launched = git_state(tmp_path, environ={"DOGBREED_GIT_COMMIT": "a" * 40, "DOGBREED_GIT_DIRTY": "true"})
    assert launched["commit"] == "a" * 40 and launched["dirty"] is True


def _splits(root: Path, classes: list[str]) -> dict[str, BreedImageFolder]:
    return {s: BreedImageFolder(root / s, classes=classes) for s in ("train", "valid", "test")}


def test_data_manifest_hash_changes_when_one_image_changes(tmp_path):
    root = generate_dataset(
        tmp_path / "data", num_classes=2, images_per_class={"train": 4, "valid": 2, "test": 2}, image_size=32
    )
    classes = sorted(p.name for p in (root / "train").iterdir())
    before = data_manifest(_splits(root, classes), classes)
    assert before == data_manifest(_splits(root, classes), classes)  # the same data, the same hash
    assert before["splits"]["train"] == {
        "classes": 2,
        "images": 8,
        "sha256": before["splits"]["train"]["sha256"],
    }

    image = sorted((root / "valid" / classes[0]).iterdir())[0]
    Image.new("RGB", (48, 48), (200, 10, 10)).save(image)  # another picture under the same name
    after = data_manifest(_splits(root, classes), classes)
    assert after["sha256"] != before["sha256"]
    assert after["splits"]["valid"]["sha256"] != before["splits"]["valid"]["sha256"]
    assert after["splits"]["train"] == before["splits"]["train"]


def test_manifest_records_command_versions_machine_and_data(tmp_path, shapes3):
    classes = sorted(p.name for p in (shapes3 / "train").iterdir())
    manifest = build_manifest(
        splits=_splits(shapes3, classes),
        class_names=classes,
        overrides=["model.lr=0.01"],
        argv=["train.py", "model.lr=0.01"],
        code_dir=tmp_path,
        environ={"TRAINING_JOB_NAME": "job-1"},
    )
    json.dumps(manifest)  # it must be plain JSON
    assert manifest["git"]["git"] is False
    assert manifest["command_line"] == ["train.py", "model.lr=0.01"]
    assert {"python", "torch", "torchvision", "lightning"} <= set(manifest["versions"])
    assert manifest["machine"]["cpu"] and manifest["machine"]["gpus"] == []
    assert manifest["data"]["splits"]["test"]["images"] == 36
    assert manifest["sagemaker_job"] == {"name": "job-1"}


def test_model_card_of_a_run_from_outside_git_says_so(trained_run, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_run / "model", model_dir)
    manifest = json.loads((trained_run / "manifest.json").read_text())
    manifest["git"] = {"git": False, "reason": "not a git checkout"}
    metrics = json.loads((trained_run / "metrics.json").read_text())
    card = write_model_card(
        model_dir,
        model_cfg={"weights": "IMAGENET1K_V2", "freeze": "head"},
        metrics=metrics,
        manifest=manifest,
        evaluation_dir=trained_run / "evaluation",
    ).read_text()
    assert "torchvision's `IMAGENET1K_V2` ImageNet weights" in card and "`freeze=head`" in card
    assert "not a git checkout" in card and "outside a git checkout" in card
    assert f"{100 * metrics['test/acc']:.1f}%" in card
    assert (model_dir / "confusion_matrix.png").is_file() and "](confusion_matrix.png)" in card


def test_sagemaker_job_tags_environment_and_tensorboard_output():
    git_info = {"commit": "c" * 40, "dirty": True, "diff_sha256": "d" * 64}
    assert job_tags(git_info) == {
        "dogbreed:git-commit": "c" * 40,
        "dogbreed:git-dirty": "true",
        "dogbreed:git-diff-sha256": "d" * 64,
    }
    assert job_tags({"git": False}) == {}
    loggers = compose_config("/tmp/unused", ["logger=[csv,mlflow,tensorboard]"]).logger
    env = job_environment(git_info, loggers, environ={})
    assert env["DOGBREED_GIT_COMMIT"] == "c" * 40
    assert env["DOGBREED_TENSORBOARD_DIR"] == TENSORBOARD_CONTAINER_DIR
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/x"
    assert job_environment(git_info, loggers, {"MLFLOW_TRACKING_URI": arn})["MLFLOW_TRACKING_URI"] == arn
    local = job_environment(git_info, loggers, {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert "MLFLOW_TRACKING_URI" not in local  # a file on this machine means nothing in the container
    assert tensorboard_output(loggers, "s3://b/p/tensorboard") == {
        "s3_output_path": "s3://b/p/tensorboard",
        "container_local_output_path": TENSORBOARD_CONTAINER_DIR,
    }
    csv_only = compose_config("/tmp/unused", []).logger
    assert tensorboard_output(csv_only, "s3://b/p/tb") is None
    assert "DOGBREED_TENSORBOARD_DIR" not in job_environment(git_info, csv_only, environ={})
    assert set(MLFLOW_REQUIREMENTS) <= set(job_requirements(loggers)) and job_requirements(csv_only) == []


def test_job_tracking_reads_the_launchers_checkout(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("")
    head = commit_all(repo)
    loggers = compose_config(tmp_path, ["logger=[csv,tensorboard,mlflow]"]).logger
    tracking = job_tracking(loggers, "s3://bucket/dogbreed/tensorboard/dogbreed-train", repo, environ={})
    assert tracking.tags["dogbreed:git-commit"] == head and tracking.tags["dogbreed:git-dirty"] == "false"
    assert tracking.environment["DOGBREED_GIT_COMMIT"] == head
    assert tracking.tensorboard_output["s3_output_path"] == "s3://bucket/dogbreed/tensorboard/dogbreed-train"
    assert "sagemaker-mlflow>=0.1" in tracking.requirements
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = job_tracking(compose_config(tmp_path, []).logger, "s3://b/t", elsewhere, environ={})
    assert outside.tags == {} and outside.environment == {} and outside.tensorboard_output is None


def test_mlflow_requirements_of_a_job_are_the_mlflow_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert list(MLFLOW_REQUIREMENTS) == extras["mlflow"]


def test_a_running_job_is_read_from_the_environment():
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/job-7"
    env = {"TRAINING_JOB_NAME": "job-7", "TRAINING_JOB_ARN": arn}
    assert mlflow_job_tags(env) == {"sagemaker.training_job_name": "job-7", "sagemaker.training_job_arn": arn}
    assert running_job({"SM_TRAINING_ENV": json.dumps({"job_name": "job-8"})}) == {"name": "job-8"}
    assert running_job({}) == {}


@pytest.mark.slow
def test_train_py_in_a_git_checkout_writes_manifest_and_card_naming_its_commit(shapes3, tmp_path):
    repo = make_repo(tmp_path / "checkout")
    stage_source(repo)  # train.py, conf/, src/: the project as a user's checkout holds it
    head = commit_all(repo)
    (repo / "conf" / "experiment" / "local.yaml").write_text("# @package _global_\n")  # an uncommitted change
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"hydra.run.dir={run_dir}",
            *TINY,
            f"data.root={shapes3}",
            "data.images_per_class=8",
            "trainer.max_epochs=1",
        ],
        cwd=repo,
        env={**_clean_env(), "PYTHONPATH": str(repo / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["git"]["commit"] == head and manifest["git"]["dirty"] is True
    assert manifest["git"]["untracked"] == ["conf/experiment/local.yaml"]
    assert "trainer.max_epochs=1" in manifest["overrides"] and manifest["command_line"][0] == "train.py"
    assert json.loads((run_dir / "model" / "model.json").read_text())["manifest"] == manifest
    card = (run_dir / "model" / "README.md").read_text()
    assert head[:12] in card and "trainer.max_epochs=1" in card and manifest["data"]["sha256"] in card
    for section in ("## The model", "## Data", "## Recipe", "## Results", "## How to use it", "## Limits"):
        assert section in card


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "SM_", "DOGBREED_GIT"))}


def test_a_run_record_reads_back_as_written_with_references_kept_and_secrets_masked(tmp_path):
    overrides = [
        "data.root=${oc.env:DOGBREED_TEST_ROOT,/data}",
        "data.url=https://fetch:hunter2-SECRET@data.example/x.zip",
    ]
    cfg = compose_config(tmp_path, [*TINY, *overrides])
    run_dir = tmp_path / "run"
    assert read_run_record(run_dir) == RunRecord()  # nothing there yet: each part None

    write_run_record(run_dir, new_run_record(cfg, {"format_version": 1, "overrides": overrides}))
    write_run_metrics(run_dir, {"test/acc": 0.5})
    record = read_run_record(run_dir)
    assert record.config["data"]["root"] == "${oc.env:DOGBREED_TEST_ROOT,/data}"  # as typed, unresolved
    assert record.config["data"]["url"] == "https://fetch:***@data.example/x.zip"
    assert record.config["model"]["arch"] == "resnet18"
    assert record.metrics == {"test/acc": 0.5}
    assert record.overrides == [overrides[0], "data.url=https://fetch:***@data.example/x.zip"]
    assert "hunter2" not in "".join(path.read_text() for path in run_dir.iterdir())


@pytest.mark.parametrize(
    "data_cfg, title, words",
    [
        ({"root": "/c/embedded-v1", "synthetic": {"classes": 6}}, "Image classifier", "smoke-test model"),
        ({"root": "/data/dogImages/", "synthetic": None}, "Dog-breed classifier", "names the dog breed"),
        ({"root": "/data/birds", "synthetic": None}, "Image classifier", "images in `birds`"),
    ],
    ids=["embedded-shapes", "dog-breeds", "own-folder"],
)
def test_model_card_describes_the_data_it_was_trained_on(trained_run, tmp_path, data_cfg, title, words):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_run / "model", model_dir)
    card = write_model_card(
        model_dir,
        model_cfg={"weights": None, "freeze": "all"},
        data_cfg=data_cfg,
        metrics=json.loads((trained_run / "metrics.json").read_text()),
        manifest=json.loads((trained_run / "manifest.json").read_text()),
        evaluation_dir=trained_run / "evaluation",
    ).read_text()
    assert card.startswith(f"# {title}: resnet18, ") and words in card
    assert json.loads((model_dir / "model_card.json").read_text())["title"].startswith(title)
    if title == "Image classifier":
        assert "dog breed" not in card
