"""A user's mistake ends in one `error:` line and exit status 2, through the real entry points."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dogbreed.config.composition import exit_on_composition_error
from dogbreed.config.errors import (
    ConfigValueError,
    UserError,
    exit_on_user_error,
    one_line,
    user_error_message,
)
from dogbreed.config.schema import check_train_config
from tests.conftest import ROOT, compose_config

slow = pytest.mark.slow

# (command-line arguments, words the error line must hold). Each runs `python train.py` in an empty folder,
# so the default data.root (data/dogImages) does not exist there. A subprocess costs seconds: the fast lane
# keeps three cases, the rest run in the full lane.
CASES = [
    pytest.param(["backend=local"], ["data/dogImages", "data.root", "experiment=smoke"], id="no-data-folder"),
    pytest.param(["model.lr=abc"], ["model.lr=abc", "not a number"], id="lr-abc"),
    pytest.param(["model.lr=-1e-3"], ["model.lr=-0.001", "positive"], id="lr-negative", marks=slow),
    pytest.param(["data.batch_size=0"], ["data.batch_size=0", "positive"], id="batch-0", marks=slow),
    pytest.param(["data.batch_size=-1"], ["data.batch_size=-1", "positive"], id="batch-neg", marks=slow),
    pytest.param(
        ["data.batch_size=abc"], ["data.batch_size=abc", "whole number"], id="batch-abc", marks=slow
    ),
    pytest.param(["data.image_size=0"], ["data.image_size=0"], id="image-size-0", marks=slow),
    pytest.param(["trainer.max_epochs=abc"], ["trainer.max_epochs=abc"], id="epochs-abc", marks=slow),
    pytest.param(["trainer.max_epochs=0"], ["trainer.max_epochs=0", "at least 1"], id="epochs-0", marks=slow),
    pytest.param(["seed=abc"], ["seed=abc", "whole number"], id="seed-abc", marks=slow),
    pytest.param(["data.num_classes=0"], ["data.num_classes=0", "at least 2"], id="classes-0", marks=slow),
    pytest.param(
        ["ckpt_path=/nonexistent.ckpt"], ["ckpt_path=/nonexistent.ckpt", "no such"], id="ckpt", marks=slow
    ),
    pytest.param(["model.arch=resnet9000"], ["model.arch=resnet9000", "resnet50"], id="arch", marks=slow),
    pytest.param(
        ["trainer=ddp", "trainer.strategy.peer_timeout_s=0"],
        ["trainer.strategy.peer_timeout_s=0", "seconds above 0"],
        id="peer-timeout-0",
        marks=slow,
    ),
    pytest.param(["data.decode=nvjpeg"], ["data.decode=nvjpeg", "cpu, gpu or auto"], id="decode", marks=slow),
    pytest.param(
        ["model=resnet18", "model.weights=null"],
        ["model.freeze=head", "model.weights=null", "model.freeze=all", "allow_random_frozen_backbone=true"],
        id="frozen-random-backbone",
    ),
    # Hydra's composition errors, reported before main runs: the key's close matches, the group's options.
    pytest.param(["model.lrr=1e-3"], ["unknown key model.lrr", "did you mean model.lr?"], id="key-typo"),
    pytest.param(
        ["model=resnet99"], ["unknown option model=resnet99", "resnet18, resnet50"], id="unknown-option"
    ),
    pytest.param(
        ["modle=resnet18"], ["unknown key modle", "did you mean model?"], id="group-typo", marks=slow
    ),
    pytest.param(
        ["trainer.precision=fp8"], ["trainer.precision=fp8", "bf16-mixed"], id="precision-fp8", marks=slow
    ),
    pytest.param(
        ["feature_cache.enabled=true", "model.freeze=all"],
        ["feature_cache.enabled=true", "model.freeze=head", "model.freeze=all"],
        id="feature-cache-unfrozen",
        marks=slow,
    ),
    pytest.param(
        ["trainer=gpu"],
        ["trainer.accelerator=gpu", "no CUDA GPU", "trainer=cpu"],
        id="gpu-without-gpu",
        marks=[slow, pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")],
    ),
]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


def _assert_one_error_line(result: subprocess.CompletedProcess, words: list[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("args, words", CASES)
def test_train_py_user_error_is_one_line(tmp_path, args, words):
    result = _run([sys.executable, str(ROOT / "train.py"), *args, "hydra.run.dir=run"], tmp_path)
    _assert_one_error_line(result, words)
    assert not (tmp_path / "run").exists(), "a run that failed before training leaves no folder"


@slow
def test_malformed_data_folder_lists_every_problem_on_one_line(tmp_path):
    (tmp_path / "images" / "train" / "beagle").mkdir(parents=True)
    result = _run([sys.executable, str(ROOT / "train.py"), "data.root=images", "hydra.run.dir=run"], tmp_path)
    line = _assert_one_error_line(result, ["images", "empty class folder", "missing split folder"])
    assert "valid" in line and "test" in line


@slow
def test_weights_that_cannot_be_fetched_offline(tmp_path):
    # A proxy on a closed loopback port: the download fails at once, as it does offline.
    proxies = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")
    offline = {var: "http://127.0.0.1:9" for var in proxies}
    offline |= {"no_proxy": "", "NO_PROXY": "", "TORCH_HOME": str(tmp_path / "torch")}
    args = ["experiment=smoke", "model.weights=DEFAULT", "data.image_size=32", "hydra.run.dir=run"]
    result = _run([sys.executable, str(ROOT / "train.py"), *args], tmp_path, offline)
    _assert_one_error_line(result, ["resnet18", "model.weights=null", "resnet18-f37072fd.pth"])


@slow
def test_tune_py_composition_error_is_one_line(tmp_path):
    args = [sys.executable, str(ROOT / "tune.py"), "tune.n_trails=3", "hydra.run.dir=run"]
    _assert_one_error_line(_run(args, tmp_path), ["unknown key tune.n_trails", "did you mean tune.n_trials?"])


@slow
def test_missing_optional_extra_names_the_pip_command(tmp_path):
    # None in sys.modules is Python's own way to make an import fail as if the package were not installed.
    code = (
        "import runpy, sys; sys.modules['optuna'] = None; "
        f"sys.argv = ['tune.py', 'experiment=smoke', 'hydra.run.dir={tmp_path / 'run'}']; "
        f"runpy.run_path({str(ROOT / 'tune.py')!r}, run_name='__main__')"
    )
    result = _run([sys.executable, "-c", code], tmp_path)
    _assert_one_error_line(result, ["optuna", "pip install -e '.[tune]'"])


@slow
@pytest.mark.parametrize(
    "hidden, options, words",
    [
        (["tensorboard", "tensorboardX"], ["logger=tensorboard"], ["logger=tensorboard", ".[tensorboard]"]),
        (["psutil"], ["profiler=on"], ["profiler=on", ".[profiling]"]),
        (["sagemaker"], ["backend=sagemaker", "backend.dry_run=true"], ["backend=sagemaker", ".[sagemaker]"]),
    ],
    ids=["tensorboard", "psutil", "sagemaker-dry-run"],
)
def test_option_without_its_extra_names_the_pip_command(tmp_path, hidden, options, words):
    argv = ["train.py", "experiment=smoke", *options, f"hydra.run.dir={tmp_path / 'run'}"]
    code = (
        f"import runpy, sys; sys.modules.update(dict.fromkeys({hidden!r})); sys.argv = {argv!r}; "
        f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')"
    )
    _assert_one_error_line(_run([sys.executable, "-c", code], tmp_path), words)


@slow
def test_model_dir_that_is_not_one(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    args = [sys.executable, str(ROOT / "serve" / "deploy.py"), "model_dir=not-a-model", "hydra.run.dir=run"]
    _assert_one_error_line(_run(args, tmp_path), ["model_dir=not-a-model", "model.json"])


@slow
def test_full_traceback_on_request(tmp_path):
    result = _run(
        [sys.executable, str(ROOT / "train.py"), "model.lr=abc", "hydra.run.dir=run"],
        tmp_path,
        {"HYDRA_FULL_ERROR": "1"},
    )
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigValueError" in result.stderr
    result = _run(
        [sys.executable, str(ROOT / "train.py"), "model.lrr=1e-3", "hydra.run.dir=run"],
        tmp_path,
        {"HYDRA_FULL_ERROR": "1"},
    )
    assert "Traceback" in result.stderr and "ConfigCompositionException" in result.stderr


def test_composition_errors_become_one_line(capsys):
    conf = ROOT / "conf"
    exit_on_composition_error(conf, "train", ["model=resnet18", "model.lr=1e-3"])  # composes: no exit
    exit_on_composition_error(
        conf, "train", ["--multirun", "model.lrr=1e-3"]
    )  # Hydra's own flags: its report
    for name, args, words in [
        ("train", ["model.lr"], ["model.lr", "missing EQUAL"]),
        ("train", ["model.lr=1,2"], ["Ambiguous value", "--multirun"]),
        ("deploy", ["backend=sagemkr"], ["unknown option backend=sagemkr", "sagemaker"]),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            exit_on_composition_error(conf, name, args)
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines


def test_a_program_fault_keeps_its_traceback():
    @exit_on_user_error
    def main() -> None:
        raise KeyError("a bug, not a user's mistake")

    with pytest.raises(KeyError):
        main()


def test_frozen_random_backbone_is_allowed_when_asked(tmp_path):
    base = ["model=resnet18", "model.weights=null"]
    with pytest.raises(ConfigValueError, match="model.freeze=layer4"):
        check_train_config(compose_config(tmp_path, [*base, "model.freeze=layer4"]))
    check_train_config(compose_config(tmp_path, [*base, "model.allow_random_frozen_backbone=true"]))
    check_train_config(compose_config(tmp_path, [*base, "model.freeze=all"]))
    check_train_config(compose_config(tmp_path, ["experiment=smoke"]))


def test_multi_line_messages_become_one_line():
    message = "folder d is not usable:\n  - missing split folder d/valid\n  - empty class folder d/train/a"
    assert (
        one_line(message)
        == "folder d is not usable: missing split folder d/valid; empty class folder d/train/a"
    )


FIXABLE = [
    ("dogbreed.data.layout", "DataLayoutError"),
    ("dogbreed.data.images", "BadImageError"),
    ("dogbreed.data.download", "DownloadError"),
    ("dogbreed.model.network", "WeightsUnavailableError"),
    ("dogbreed.model.checkpoints", "CheckpointError"),
    ("dogbreed.modeldir.format", "ModelDirError"),
    ("dogbreed.tuning.search_space", "SearchSpaceError"),
    ("dogbreed.tuning.objective", "TuneConfigError"),
    ("dogbreed.sagemaker.session", "SageMakerSetupError"),
    ("dogbreed.sagemaker.container.overrides", "ChannelLayoutError"),
    ("dogbreed.config.errors", "MissingExtraError"),
]


@pytest.mark.parametrize(("module", "name"), FIXABLE, ids=[name for _, name in FIXABLE])
def test_every_fixable_error_is_a_user_error(module, name):
    error_type = getattr(importlib.import_module(module), name)
    assert issubclass(error_type, UserError)


def test_a_user_error_raised_under_another_is_found():
    class FolderError(UserError, ValueError):
        pass

    try:
        try:
            raise FolderError("folder d is not usable:\n  - missing d/valid")
        except FolderError as error:
            raise RuntimeError("instantiate failed") from error
    except RuntimeError as wrapped:
        assert user_error_message(wrapped) == "folder d is not usable: missing d/valid"
    assert user_error_message(KeyError("a bug")) is None


def test_precision_choices_are_lightnings_own():
    import typing

    from lightning.fabric import connector

    from dogbreed.config.choices import PRECISIONS

    lightning = {
        str(v)
        for alias in ("_PRECISION_INPUT_STR", "_PRECISION_INPUT_INT", "_PRECISION_INPUT_STR_ALIAS")
        for v in typing.get_args(getattr(connector, alias))
    }
    assert set(PRECISIONS) == lightning | {"auto"}
