"""The `name=value` metric lines a run prints, and the regex that reads one back.

Locally they are the run's log; on SageMaker the job's metric definitions parse them with `metric_regex`,
so the writer and the reader of the format live here together. No Lightning import: the SageMaker
launcher reads these names without loading the training stack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The metric names every run logs; SageMaker metric definitions are generated from this list.
METRIC_NAMES = (
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "val/acc_top5",
    "test/loss",
    "test/acc",
    "test/acc_top5",
)

# A float as format_metric_lines prints it (`%.6f`), plus exponents and nan/inf in case a value is odd.
_NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"


def format_metric_lines(metrics: Mapping[str, float], prefix: str = "") -> str:
    """`val/acc=0.812300` lines, one per known metric present, in METRIC_NAMES order."""
    return "\n".join(f"{prefix}{name}={float(metrics[name]):.6f}" for name in METRIC_NAMES if name in metrics)


def metric_regex(name: str) -> str:
    """The regex that reads `name=value` lines; group 1 is the value.

    Not anchored: CloudWatch may prefix a line; `name=` cannot match inside another name's line
    because every name ends right before its `=`.
    """
    return rf"{re.escape(name)}={_NUMBER}"


def epoch_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    """The epoch-level train/* and val/* figures among a trainer's callback metrics, `_epoch` suffix removed
    (the per-step `_step` values left out)."""
    picked = {k: float(v) for k, v in callback_metrics.items() if k.startswith(("val/", "train/"))}
    return {k.removesuffix("_epoch"): v for k, v in picked.items() if not k.endswith("_step")}
