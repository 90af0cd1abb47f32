"""The hyperparameter search space (conf/search/*.yaml): load, validate, turn into Optuna distributions.

A search-space file maps Hydra override keys of the train config to ranges:

    model.lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
    data.batch_size: {type: categorical, choices: [16, 32, 64]}
    trainer.max_epochs: {type: int, low: 2, high: 10}

The validated `Param`s hold no Optuna object: `search_space_to_optuna` and `search_space_to_sagemaker` (a
tuning job's parameter ranges) translate the same parsed file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.config.errors import UserError

PARAM_TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


class SearchSpaceError(UserError, ValueError):
    """A search-space entry that cannot be used; the message names the file and the parameter."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter: `name` is the Hydra override key it sets (e.g. `model.lr`)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()


def _number(value: Any, where: str, field: str, integer: bool) -> float | int:
    # YAML 1.1 reads `1e-5` (no dot) as a string: say so instead of failing later in Optuna.
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = (
            " (YAML needs a dot in exponent floats: write 1.0e-5, not 1e-5)" if isinstance(value, str) else ""
        )
        raise SearchSpaceError(f"{where}: {field}={value!r} is not a number{hint}")
    if integer and not float(value).is_integer():
        raise SearchSpaceError(f"{where}: {field}={value!r} is not an integer (type: int)")
    if not math.isfinite(value):
        raise SearchSpaceError(f"{where}: {field}={value!r} is not finite")
    return int(value) if integer else float(value)


def parse_param(name: str, spec: Any, source: str = "search space") -> Param:
    """Validate one entry; every error names `source` and the parameter."""
    where = f"{source}: parameter {name}"
    if not isinstance(name, str) or not name or name.startswith(".") or name.endswith("."):
        raise SearchSpaceError(f"{source}: {name!r} is not a config key such as model.lr")
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"{where}: expected a mapping with a type, got {spec!r}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise SearchSpaceError(f"{where}: unknown type {kind!r}; use one of {', '.join(PARAM_TYPES)}")
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        raise SearchSpaceError(
            f"{where}: unknown field(s) {', '.join(unknown)} for type {kind}; "
            f"allowed: {', '.join(sorted(_KEYS[kind]))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if isinstance(choices, str | bytes) or not isinstance(choices, list | tuple) or not choices:
            raise SearchSpaceError(f"{where}: type categorical needs a non-empty list of choices")
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise SearchSpaceError(
                f"{where}: choices must be numbers, strings, booleans or null, got {bad!r}"
            )
        if len(set(map(repr, choices))) != len(choices):
            raise SearchSpaceError(f"{where}: choices {list(choices)!r} repeat a value")
        return Param(name, kind, choices=tuple(choices))

    integer = kind == "int"
    for field in ("low", "high"):
        if spec.get(field) is None:
            raise SearchSpaceError(f"{where}: type {kind} needs {field}")
    low = _number(spec["low"], where, "low", integer)
    high = _number(spec["high"], where, "high", integer)
    if low > high:
        raise SearchSpaceError(f"{where}: low={low} is greater than high={high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: log={log!r} must be true or false")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}: log scale needs low > 0, got low={low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, where, "step", integer)
        if step <= 0:
            raise SearchSpaceError(f"{where}: step={step} must be positive")
        if log and (not integer or step != 1):
            raise SearchSpaceError(f"{where}: step cannot be combined with log: true")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def load_search_space(spec: Mapping[str, Any] | str | Path, source: str | None = None) -> dict[str, Param]:
    """Parse a search space from a mapping (e.g. `cfg.search`) or a YAML file; name -> Param."""
    if isinstance(spec, str | Path):
        from omegaconf import OmegaConf

        source = source or str(spec)
        path = Path(spec)
        if not path.is_file():
            raise SearchSpaceError(f"search space file {path} does not exist")
        spec = OmegaConf.load(path)
    source = source or "search space"
    if hasattr(spec, "_metadata"):  # an OmegaConf node: plain containers from here on
        from omegaconf import OmegaConf

        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping) or not spec:
        raise SearchSpaceError(f"{source}: expected a non-empty mapping of config keys to ranges")
    return {name: parse_param(name, entry, source) for name, entry in spec.items()}


def search_space_to_optuna(space: Mapping[str, Param]) -> dict[str, Any]:
    """name -> optuna.distributions.* for `trial._suggest` / `study.ask(fixed_distributions=...)`."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            out[name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            out[name] = FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)
    return out


def search_space_to_sagemaker(space: Mapping[str, Param]) -> dict[str, Any]:
    """name -> sagemaker.tuner.*Parameter for a HyperparameterTuner (needs the SageMaker SDK).

    SageMaker's ranges have no step: an int's step of 1 is its own; any other step is refused, naming it.
    """
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.step is not None and not (p.type == "int" and p.step == 1):
            raise SearchSpaceError(
                f"search space: parameter {name}: step={p.step} cannot be sent to a SageMaker tuning job "
                "(its ranges have no step); remove the step or use a categorical list of the values"
            )
        if p.type == "categorical":
            out[name] = CategoricalParameter([_sagemaker_text(c) for c in p.choices])
        else:
            scaling = "Logarithmic" if p.log else "Linear"
            parameter = ContinuousParameter if p.type == "float" else IntegerParameter
            out[name] = parameter(p.low, p.high, scaling_type=scaling)
    return out


def _sagemaker_text(value: Any) -> str:
    # Hyperparameter values are strings; a boolean as Hydra spells it, so train.py reads it back.
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
