"""The values a user sets (the train config; deploy.py's serverless and transform), checked before use.

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

from dogbreed.config.choices import ARCHES, BAD_IMAGE_POLICIES, DECODE_CHOICES, FREEZE_POLICIES, PRECISIONS
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
    keep_checkpoints: bool = True


@dataclass
class ServerlessValues:
    """endpoint.serverless of conf/deploy.yaml: a serverless endpoint's memory and concurrency."""

    enabled: bool = False
    memory_size_mb: int = 2048
    max_concurrency: int = 5


@dataclass
class TransformValues:
    """transform of conf/deploy.yaml: a batch transform job of an S3 folder of images."""

    input: str | None = None
    output: str | None = None
    content_type: str = "application/x-image"
    accept: str = "application/json"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_concurrent_transforms: int | None = None
    max_payload_mb: int = 6
    job_name: str | None = None
    wait: bool = True


@dataclass
class MlflowModelValues:
    """The keys of logger.mlflow that this project reads itself (the logger is built without them)."""

    log_exported_model: bool = True
    registered_model_name: str | None = None


MLFLOW_MODEL_KEYS = tuple(f.name for f in fields(MlflowModelValues))

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

# conf/deploy.yaml's values with a range; SageMaker's own limits (CreateEndpointConfig's ServerlessConfig,
# CreateTransformJob), checked before anything is packed or uploaded.
DEPLOY_RULES: list[Rule] = [
    (
        "endpoint.serverless.memory_size_mb",
        lambda v: v in range(1024, 6145, 1024),
        "1024, 2048, 3072, 4096, 5120 or 6144 (MB)",
    ),
    ("endpoint.serverless.max_concurrency", lambda v: 1 <= v <= 200, "from 1 to 200"),
    (
        "transform.input",
        lambda v: v is None or (v.startswith("s3://") and len(v) > len("s3://")),
        "an S3 folder of images, e.g. transform.input=s3://<bucket>/images/",
    ),
    (
        "transform.output",
        lambda v: v is None or (v.startswith("s3://") and len(v) > len("s3://")),
        "an S3 folder for the answers, e.g. transform.output=s3://<bucket>/answers/",
    ),
    ("transform.instance_count", lambda v: v >= 1, "a positive number of instances"),
    ("transform.max_payload_mb", lambda v: 1 <= v <= 100, "from 1 to 100 (MB per image)"),
    ("transform.max_concurrent_transforms", lambda v: v is None or v >= 1, "null or a positive number"),
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


def _check_rules(values: Mapping[str, Any], rules: list[Rule]) -> None:
    """The first value a rule refuses, as one ConfigValueError: `section.name=value is not allowed`."""
    for key, allowed, what in rules:
        section, name = key.rsplit(".", 1)
        value = getattr(values[section], name)
        if not allowed(value):
            raise ConfigValueError(f"{key}={value} is not allowed: use {what}")


def check_deploy_config(cfg: DictConfig) -> None:
    """Raise ConfigValueError naming the first endpoint.serverless or transform value SageMaker refuses."""
    values = {
        "endpoint.serverless": _typed("endpoint.serverless", cfg.endpoint.serverless, ServerlessValues),
        "transform": _typed("transform", cfg.transform, TransformValues),
    }
    _check_rules(values, DEPLOY_RULES)
    if values["transform"].input and not values["transform"].output:
        raise ConfigValueError(
            "transform.input is set but transform.output is not: give the S3 folder for the answers, "
            "e.g. transform.output=s3://<bucket>/answers/"
        )


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


def check_precision(precision: Any) -> None:
    """trainer.precision must be auto or a value Lightning's Trainer takes."""
    if str(precision) not in PRECISIONS:
        raise ConfigValueError(
            f"trainer.precision={precision} is not allowed: use auto, 32-true, bf16-mixed, 16-mixed or "
            f"another of {', '.join(PRECISIONS[1:])}"
        )


def check_feature_cache(settings: Mapping[str, Any] | None, freeze: str) -> None:
    """Cached backbone features hold only while the backbone does not train (model.freeze=head)."""
    if settings and settings.get("enabled") and freeze != "head":
        raise ConfigValueError(
            f"feature_cache.enabled=true needs model.freeze=head, not model.freeze={freeze}: the backbone "
            "would train and its cached features would go stale (use model.freeze=head, or "
            "feature_cache.enabled=false)"
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
    _check_rules(values, RULES)
    num_workers = cfg.data.get("num_workers", "auto")
    if num_workers != "auto" and not (str(num_workers).isdigit()):
        raise ConfigValueError(f"data.num_workers={num_workers} is not allowed: use auto or 0 or more")
    model = values["model"]
    check_scheduler(model.scheduler)
    check_freeze_has_weights(model.weights, model.freeze, model.allow_random_frozen_backbone)
    check_precision(cfg.trainer.get("precision", "auto"))
    check_feature_cache(cfg.get("feature_cache"), model.freeze)
    if run.checkpoint_every_minutes is not None and run.checkpoint_every_minutes <= 0:
        raise ConfigValueError(
            f"checkpoint_every_minutes={run.checkpoint_every_minutes} is not allowed: use a number of "
            "minutes above 0, or null for no checkpoint by time"
        )
    for key, node in (cfg.get("logger") or {}).items():
        check_mlflow_model_values(f"logger.{key}", node)
    check_peer_timeout(cfg.trainer.get("strategy"))
    ckpt = run.ckpt_path
    is_file_path = ckpt and ckpt not in LIGHTNING_CKPT_NAMES and "://" not in ckpt
    if is_file_path and not Path(ckpt).expanduser().is_file():
        raise ConfigValueError(
            f"ckpt_path={ckpt}: no such checkpoint file (use a .ckpt file, ckpt_path=last to resume the "
            "run in hydra.run.dir, or ckpt_path=null to start fresh)"
        )


def check_mlflow_model_values(section: str, node: Mapping[str, Any] | None) -> None:
    """A logger node's registered_model_name needs its exported model logged; a name is not blank."""
    if not node or not any(key in node for key in MLFLOW_MODEL_KEYS):
        return
    values = _typed(section, node, MlflowModelValues)
    name = values.registered_model_name
    if name is not None and not name.strip():
        raise ConfigValueError(
            f"{section}.registered_model_name={name!r} is not allowed: use a model name, or null to log "
            "the model without registering it"
        )
    if name is not None and not values.log_exported_model:
        raise ConfigValueError(
            f"{section}.registered_model_name={name} registers the logged model, but "
            f"{section}.log_exported_model=false logs none: set log_exported_model=true or "
            "registered_model_name=null"
        )
