"""What a SageMaker job is told, in plain data: Hydra overrides <-> job hyperparameters, metric regexes.

Kept free of the SageMaker SDK so the launcher and the container side (which has no SDK) share it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from dogbreed.callbacks import METRIC_NAMES

# Overrides that describe the launching machine, not the training: the container sets its own.
LAUNCHER_ONLY_KEYS = ("backend", "hydra", "run_dir", "model_dir", "ckpt_path", "data.root", "task_name")

# A float as MetricLinePrinter prints it (`%.6f`), plus exponents and nan/inf in case a value is odd.
_NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_launcher_only(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in LAUNCHER_ONLY_KEYS)


def hyperparameters_from_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """Hydra overrides (`model.lr=3e-4`, `+x=1`, `~y`) -> job hyperparameters {key: value}, launcher keys out.

    SageMaker hyperparameters are string pairs; the key keeps its `+`/`~` prefix so the container can
    rebuild the exact override. A deletion without value (`~y`) travels with an empty value.
    """
    hyperparameters: dict[str, str] = {}
    for override in overrides:
        key, _, value = override.partition("=")
        if not key or _is_launcher_only(_override_key(override)):
            continue
        hyperparameters[key] = value
    return hyperparameters


def overrides_from_hyperparameters(hyperparameters: dict[str, object]) -> list[str]:
    """The inverse: {key: value} -> ['key=value', ...]; values may arrive as numbers from SM_HPS."""
    overrides = []
    for key, value in hyperparameters.items():
        if key.startswith("sagemaker_"):  # the toolkit's own settings (program, submit dir, ...)
            continue
        text = _hydra_value(value)
        overrides.append(key if key.startswith("~") and text == "" else f"{key}={text}")
    return overrides


def _hydra_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)  # Hydra's grammar reads JSON lists/dicts of plain values
    return str(value)


def metric_regex(name: str) -> str:
    """The regex that reads `name=value` lines (MetricLinePrinter's format); group 1 is the value.

    Not anchored: CloudWatch may prefix a line; `name=` cannot match inside another name's line
    because every name ends right before its `=`.
    """
    return rf"{re.escape(name)}={_NUMBER}"


def metric_definitions(names: Iterable[str] = METRIC_NAMES) -> list[dict[str, str]]:
    """SageMaker metric_definitions, one per metric train.py prints; a tuning objective must be one."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in names]
