"""The train config's values a user sets, checked before anything is built.

Types are OmegaConf's structured-config validation (dataclasses below); the allowed ranges and choices are
the rules after them. A bad value stops the run with one ConfigValueError naming the key. This module
imports no torch, so a typo on the command line fails in a second, not after the model is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from dogbreed.config.choices import ARCHES, BAD_IMAGE_POLICIES, DECODE_CHOICES, FREEZE_POLICIES
from dogbreed.config.errors import ConfigValueError

SCHEDULERS = (None, "constant", "cosine")
# ckpt_path values Lightning resolves itself rather than as a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")


@dataclass
class ModelValues:
    """The model's settings and their defaults: the one home of both. BreedClassifier's signature takes its
    defaults from here; conf/model/resnet50.yaml repeats them for Hydra and a test holds it to them."""

    arch: str = "resnet50"
    weights: str | None = "DEFAULT"
    freeze: str = "head"
    head_hidden: int | None = None
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 1e-2
    eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    scheduler: str | None = None
    label_smoothing: float = 0.0
    channels_last: bool = True
    allow_random_frozen_backbone: bool = False


@dataclass
class DataValues:
    image_size: int = 224
    batch_size: int = 32
    eval_batch_size: int | None = None
    prefetch_factor: int | None = None
    min_crop_scale: float = 0.08
    hflip: bool = True
    num_classes: int | None = None
    images_per_class: int | None = None
    eval_images_per_class: int | None = None
    subset_seed: int = 0
    on_bad_image: str = "error"
    decode: str = "auto"
    download: bool = False


@dataclass
class TrainerValues:
    max_epochs: int | None = None
    max_steps: int = -1


@dataclass
class RunValues:
    seed: int | None = None
    ckpt_path: str | None = None
    export: bool = True
    checkpoint_every_minutes: float | None = None


TYPE_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "tuple[float, float]": "a pair of numbers, e.g. [0.9, 0.999]",
}

# (key, allowed, what is allowed): checked after the types, so `allowed` sees converted values.
Rule = tuple[str, Callable[[Any], bool], str]
RULES: list[Rule] = [
    ("model.arch", lambda v: v in ARCHES, f"one of {', '.join(ARCHES)}"),
    ("model.freeze", lambda v: v in FREEZE_POLICIES, f"one of {', '.join(FREEZE_POLICIES)}"),
    # 0 is allowed: it freezes every weight, which the diagnostics' own checks use.
    ("model.lr", lambda v: v >= 0 and math.isfinite(v), "0 or a positive number, e.g. model.lr=1e-3"),
    ("model.weight_decay", lambda v: v >= 0, "0 or more"),
    ("model.eps", lambda v: v > 0, "a positive number"),
    ("model.dropout", lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
    ("model.label_smoothing", lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
    ("model.warmup_epochs", lambda v: v >= 0, "0 or more"),
    ("model.head_hidden", lambda v: v is None or v >= 1, "null or a positive number of units"),
    # An exported model's resize size must stay within preprocessing.MAX_IMAGE_SIDE (4096) to be served.
    ("data.image_size", lambda v: 1 <= v <= 2048, "from 1 to 2048 pixels, e.g. data.image_size=224"),
    ("data.batch_size", lambda v: v >= 1, "a positive number, e.g. data.batch_size=32"),
    ("data.eval_batch_size", lambda v: v is None or v >= 1, "null or a positive number"),
    ("data.prefetch_factor", lambda v: v is None or v >= 1, "null or a positive number"),
    ("data.min_crop_scale", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("data.num_classes", lambda v: v is None or v >= 2, "null (all classes) or at least 2"),
    ("data.images_per_class", lambda v: v is None or v >= 1, "null (all images) or a positive number"),
    ("data.eval_images_per_class", lambda v: v is None or v >= 1, "null or a positive number"),
    ("data.on_bad_image", lambda v: v in BAD_IMAGE_POLICIES, "error or skip"),
    ("data.decode", lambda v: v in DECODE_CHOICES, "cpu, gpu or auto (gpu when training on a GPU)"),
    (
        "trainer.max_epochs",
        lambda v: v is None or v >= 1 or v == -1,
        "at least 1 (or -1: no limit, with trainer.max_steps)",
    ),
]


def _typed(section: str, node: Mapping[str, Any], schema: type) -> Any:
    """The values of `node` that `schema` knows, converted to its field types."""
    picked = {f.name: node[f.name] for f in fields(schema) if f.name in node}
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), picked))
    except ValidationError as exc:
        key = str(exc.full_key)
        annotation = str(next(f.type for f in fields(schema) if f.name == key))  # e.g. "int | None"
        expected = TYPE_NAMES[annotation.split("|")[0].strip()]
        optional = " or null" if "None" in annotation else ""
        prefix = f"{section}." if section else ""
        raise ConfigValueError(f"{prefix}{key}={picked[key]} is not {expected}{optional}") from None


def check_scheduler(scheduler: str | None) -> None:
    """model.scheduler must name a schedule BreedClassifier.configure_optimizers knows."""
    if scheduler not in SCHEDULERS:
        raise ConfigValueError(f"model.scheduler={scheduler} is not one of null, constant, cosine")


def check_freeze_has_weights(weights: str | None, freeze: str, allowed: bool) -> None:
    """A frozen backbone with random weights (model.weights=null) computes features that mean nothing."""
    if allowed or freeze not in ("head", "layer4"):
        return
    if weights is None or str(weights).lower() in ("null", "none", ""):
        raise ConfigValueError(
            f"model.freeze={freeze} with model.weights=null trains on a random backbone that stays frozen "
            "(it learns little): use model.freeze=all to train from scratch, pretrained weights "
            "(model.weights=DEFAULT), or model.allow_random_frozen_backbone=true if that is what you want"
        )


def check_peer_timeout(strategy: Any) -> None:
    """trainer.strategy.peer_timeout_s (trainer=ddp) must be a number of seconds above 0."""
    if not isinstance(strategy, Mapping) or "peer_timeout_s" not in strategy:
        return
    value = strategy["peer_timeout_s"]
    try:
        ok = float(value) > 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigValueError(
            f"trainer.strategy.peer_timeout_s={value} is not allowed: use a number of seconds above 0 "
            "(how long a process waits for another before the run stops), e.g. 300"
        )


def check_train_config(cfg: DictConfig) -> None:
    """Raise ConfigValueError naming the first key whose value cannot work; build nothing."""
    values = {
        "model": _typed("model", cfg.model, ModelValues),
        "data": _typed("data", cfg.data, DataValues),
        "trainer": _typed("trainer", cfg.trainer, TrainerValues),
    }
    run = _typed("", cfg, RunValues)
    for key, allowed, what in RULES:
        section, name = key.split(".")
        value = getattr(values[section], name)
        if not allowed(value):
            raise ConfigValueError(f"{key}={value} is not allowed: use {what}")
    num_workers = cfg.data.get("num_workers", "auto")
    if num_workers != "auto" and not (str(num_workers).isdigit()):
        raise ConfigValueError(f"data.num_workers={num_workers} is not allowed: use auto or 0 or more")
    model = values["model"]
    check_scheduler(model.scheduler)
    check_freeze_has_weights(model.weights, model.freeze, model.allow_random_frozen_backbone)
    if run.checkpoint_every_minutes is not None and run.checkpoint_every_minutes <= 0:
        raise ConfigValueError(
            f"checkpoint_every_minutes={run.checkpoint_every_minutes} is not allowed: use a number of "
            "minutes above 0, or null for no checkpoint by time"
        )
    check_peer_timeout(cfg.trainer.get("strategy"))
    ckpt = run.ckpt_path
    is_file_path = ckpt and ckpt not in LIGHTNING_CKPT_NAMES and "://" not in ckpt
    if is_file_path and not Path(ckpt).expanduser().is_file():
        raise ConfigValueError(
            f"ckpt_path={ckpt}: no such checkpoint file (use a .ckpt file, ckpt_path=last to resume the "
            "run in hydra.run.dir, or ckpt_path=null to start fresh)"
        )
