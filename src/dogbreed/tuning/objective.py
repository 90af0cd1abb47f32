"""A study's objective, `tune.objective` and `tune.direction`: one reading for the local tuner and a
SageMaker tuning job. No Optuna import: a SageMaker launch reads it without the local tuner's stack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dogbreed.config.errors import UserError

DIRECTIONS = ("minimize", "maximize")


class TuneConfigError(UserError, ValueError):
    """A `tune.*` setting that cannot work; the message names the key."""


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


def objective_of(tune_cfg: Mapping[str, Any]) -> Objective:
    """`tune.objective` and `tune.direction` (auto: minimise a loss, maximise an accuracy)."""
    metric = str(tune_cfg.get("objective") or "")
    if not metric.startswith("val/"):
        raise TuneConfigError(
            f"tune.objective={metric!r}: use a validation metric such as val/loss or val/acc "
            "(the pruner reads it after each validation epoch)"
        )
    direction = str(tune_cfg.get("direction") or "auto")
    if direction == "auto":
        if metric.endswith("loss"):
            direction = "minimize"
        elif "acc" in metric:
            direction = "maximize"
        else:
            raise TuneConfigError(
                f"tune.direction=auto cannot tell how to optimise {metric}: set minimize/maximize"
            )
    if direction not in DIRECTIONS:
        raise TuneConfigError(f"tune.direction={direction!r} is not one of auto, {', '.join(DIRECTIONS)}")
    return Objective(metric, direction)
