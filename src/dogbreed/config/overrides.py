"""Hydra override text, in one place: the key an override sets, a value as override text, and the round trip
between overrides and SageMaker job hyperparameters (string pairs).

    override_key("++trainer.num_nodes=2")                 -> "trainer.num_nodes"
    format_override("model.lr", 0.00031)                  -> "model.lr=0.00031"
    hyperparameters_from_overrides(["model.lr=3e-4"])     -> {"model.lr": "3e-4"}
    overrides_from_hyperparameters({"model.lr": "3e-4"})  -> ["model.lr=3e-4"]
    decode_hyperparameter('"cosine"')                     -> "cosine"
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Keys of tune.py's config that train.py's does not have: a training run (a trial, a SageMaker training job)
# given them dies in Hydra.
TUNE_ONLY_KEYS = ("tune", "search")
# Overrides that describe the launching machine, not the training: a SageMaker job sets its own.
LAUNCHER_ONLY_KEYS = (
    "backend",
    "hydra",
    "run_dir",
    "model_dir",
    "ckpt_path",
    "data.root",
    "task_name",
    "attach",
)


def override_key(override: str) -> str:
    """The config key an override sets: `++trainer.num_nodes=2` -> `trainer.num_nodes` (`~x` -> `x`)."""
    return override.split("=", 1)[0].lstrip("+~")


def is_under(key: str, prefixes: Sequence[str]) -> bool:
    """`key` is one of `prefixes` or inside one (`tune.n_trials` is under `tune`, `tuned` is not)."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def without_keys(overrides: Iterable[str], prefixes: Sequence[str], also: Iterable[str] = ()) -> list[str]:
    """`overrides` minus those that set a key under `prefixes` or one of the keys in `also`."""
    also = set(also)
    return [o for o in overrides if not is_under(override_key(o), prefixes) and override_key(o) not in also]


def format_override(name: str, value: Any) -> str:
    """`model.lr=0.00031` as Hydra's command-line grammar reads it back to the same value."""
    if value is None:
        return f"{name}=null"
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, float):
        return f"{name}={value!r}"
    if isinstance(value, int):
        return f"{name}={value}"
    text = str(value)
    # Quote strings Hydra would otherwise read as another type or split (spaces, commas, brackets).
    if not text or any(c in text for c in " ,[]{}()='\"\\:") or text.lower() in ("null", "true", "false"):
        return f"{name}='" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    try:
        float(text)
    except ValueError:
        return f"{name}={text}"
    return f"{name}='{text}'"


def hyperparameters_from_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """Hydra overrides (`model.lr=3e-4`, `+x=1`, `~y`) -> job hyperparameters {key: value}, launcher keys out.

    SageMaker hyperparameters are string pairs; the key keeps its `+`/`~` prefix so the container can
    rebuild the exact override. A deletion without value (`~y`) travels with an empty value.
    """
    hyperparameters: dict[str, str] = {}
    for override in overrides:
        key, _, value = override.partition("=")
        if not key or is_under(override_key(override), LAUNCHER_ONLY_KEYS):
            continue
        hyperparameters[key] = value
    return hyperparameters


def overrides_from_hyperparameters(hyperparameters: Mapping[str, object]) -> list[str]:
    """The inverse: {key: value} -> ['key=value', ...]; values may arrive as numbers from SM_HPS."""
    overrides = []
    for key, value in hyperparameters.items():
        # The toolkit's own settings (sagemaker_program, ...) and the service's (_tuning_objective_metric,
        # which a tuning job adds to every training job's hyperparameters) are not train.py's.
        if key.startswith(("sagemaker_", "_")):
            continue
        text = value_text(value)
        overrides.append(key if key.startswith("~") and text == "" else f"{key}={text}")
    return overrides


def decode_hyperparameter(value: object) -> object:
    """A job hyperparameter as the job reads it: the SDK JSON-encodes the values of framework estimators
    (`"\\"cosine\\""`, `"0.001"`), the tuning service sends tuned values raw (`cosine`). Anything that is
    not JSON is the value itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def value_text(value: object) -> str:
    """A hyperparameter value as override text: booleans and null as Hydra spells them, lists/dicts as
    JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)  # Hydra's grammar reads JSON lists/dicts of plain values
    return str(value)
