"""Every config group option composes and instantiates into the real objects."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dogbreed.data import DogBreedDataModule
from dogbreed.model.classifier import BreedClassifier
from dogbreed.tracking.mlflow_run import instantiate_logger
from dogbreed.training.acceleration import resolve_precision
from tests.conftest import CONF_DIR, ROOT, compose_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("data", _options("data"))
@pytest.mark.parametrize("model", _options("model"))
def test_data_and_model_options_instantiate(tmp_path, data, model):
    overrides = [f"data={data}", f"model={model}", "model.weights=null", "model.freeze=all"]
    cfg = compose_config(tmp_path, overrides)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, DogBreedDataModule)
    assert datamodule.preprocessing.crop_size == cfg.data.image_size
    classifier = instantiate(cfg.model, num_classes=7)
    assert isinstance(classifier, BreedClassifier)
    assert classifier.net.fc[-1].out_features == 7


@pytest.mark.parametrize("trainer", [t for t in _options("trainer") if t != "gpu"])
@pytest.mark.parametrize("logger", _options("logger"))
@pytest.mark.parametrize("callbacks", _options("callbacks"))
def test_trainer_logger_callbacks_instantiate(tmp_path, trainer, logger, callbacks):
    if logger == "tensorboard":
        pytest.importorskip("tensorboard")
    cfg = compose_config(tmp_path, [f"trainer={trainer}", f"logger={logger}", f"callbacks={callbacks}"])
    trainer_obj = instantiate(
        cfg.trainer,
        callbacks=[instantiate(c) for c in cfg.callbacks.values()],
        logger=[instantiate_logger(lg) for lg in cfg.logger.values()],  # as fit() does
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),  # as fit() does
    )
    assert isinstance(trainer_obj, pl.Trainer)
    assert trainer_obj.checkpoint_callback.dirpath == str(tmp_path / "checkpoints")


def test_every_trainer_argument_is_a_key_at_lightnings_default(tmp_path):
    """trainer.<any Trainer argument>=... works without `+`: conf/trainer/default.yaml names each one, and
    the ones this project does not choose keep Lightning's own default."""
    import inspect

    cfg = compose_config(tmp_path, ["trainer.accumulate_grad_batches=2", "trainer.max_time=00:00:10:00"])
    assert cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.max_time == "00:00:10:00"
    parameters = inspect.signature(pl.Trainer.__init__).parameters
    from_groups = {"self", "logger", "callbacks"}  # set by fit() from their own config groups
    default = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml")
    assert set(default) - {"_target_"} == set(parameters) - from_groups
    ours = {"default_root_dir", "accelerator", "devices", "max_epochs", "precision", "log_every_n_steps"}
    ours |= {"deterministic", "enable_progress_bar", "enable_model_summary", "plugins"}
    for name in set(default) - {"_target_"} - ours:
        assert default[name] == parameters[name].default, name


def test_gpu_trainer_config_asks_for_bf16_on_gpu(tmp_path):
    cfg = compose_config(tmp_path, ["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed"


def test_smoke_experiment_is_an_offline_subset_recipe(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=smoke"])
    assert cfg.model.arch == "resnet18" and cfg.model.weights is None
    assert cfg.data.synthetic is not None, "smoke must need no download"
    assert cfg.data.num_classes and cfg.data.images_per_class
    # The same recipe on a user's own data: the data group can still be swapped on the command line.
    real = compose_config(tmp_path, ["experiment=smoke", "data=dogimages", "data.root=/somewhere"])
    assert real.data.synthetic is None and real.data.root == "/somewhere"
    assert real.data.num_classes == cfg.data.num_classes


def test_default_config_is_resnet50_with_imagenet_weights_and_adamw_settings(tmp_path):
    cfg = compose_config(tmp_path)
    assert cfg.backend.name == "local"
    assert cfg.model.arch == "resnet50" and cfg.model.weights == "DEFAULT"
    assert cfg.trainer.accelerator == "auto"
    assert cfg.data.root.endswith("dogImages")
    assert {"lr", "weight_decay", "eps", "betas"} <= set(cfg.model)


def test_the_model_defaults_live_once_in_model_values():
    """BreedClassifier's signature takes its defaults from ModelValues; the yaml Hydra reads repeats them."""
    import dataclasses
    import inspect

    from omegaconf import OmegaConf

    from dogbreed.config.schema import ModelValues

    defaults = dataclasses.asdict(ModelValues())
    signature = inspect.signature(BreedClassifier.__init__).parameters
    assert set(signature) - {"self", "num_classes", "class_names", "head_only"} == set(defaults)
    assert {name: signature[name].default for name in defaults} == defaults
    composed = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "resnet50.yaml"))
    settings = {key: value for key, value in composed.items() if not key.startswith("_")}
    assert settings == {key: list(v) if isinstance(v, tuple) else v for key, v in defaults.items()}


@pytest.mark.parametrize("value", ["linear", "Cosine"])
def test_an_unknown_scheduler_is_refused_by_the_one_check(tmp_path, value):
    from dogbreed.config.errors import ConfigValueError
    from dogbreed.config.schema import check_train_config

    cfg = compose_config(tmp_path, [f"model.scheduler={value}"])
    with pytest.raises(
        ConfigValueError, match=f"model.scheduler={value} is not one of null, constant, cosine"
    ):
        check_train_config(cfg)
