"""What a SageMaker job is told, in plain data: metric regexes and the Debugger/Profiler rules it runs
(hyperparameters <-> Hydra overrides: dogbreed.overrides).

Kept free of the SageMaker SDK so the launcher and the container side (which has no SDK) share it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dogbreed.callbacks import METRIC_NAMES
from dogbreed.diagnostics.debugger_rules import DEBUGGER_RULE_DEFAULTS
from dogbreed.diagnostics.outcomes import (
    RuleSpec,
    parse_rule_specs,
    rule_metric_name,
    sagemaker_rule_parameters,
)
from dogbreed.diagnostics.profiler_rules import PROFILER_RULE_DEFAULTS

log = logging.getLogger(__name__)

RULE_DEFAULTS = {"debugger": DEBUGGER_RULE_DEFAULTS, "profiler": PROFILER_RULE_DEFAULTS}
# SageMaker's profiler report: not a rule of ours but a job that runs every profiler rule itself.
PROFILER_REPORT = "ProfilerReport"

# A float as MetricLinePrinter prints it (`%.6f`), plus exponents and nan/inf in case a value is odd.
_NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"


def metric_regex(name: str) -> str:
    """The regex that reads `name=value` lines (MetricLinePrinter's format); group 1 is the value.

    Not anchored: CloudWatch may prefix a line; `name=` cannot match inside another name's line
    because every name ends right before its `=`.
    """
    return rf"{re.escape(name)}={_NUMBER}"


# debugger=on / profiler=on print one `rule/<name>=<status>` line per rule (diagnostics/outcomes.py).
RULE_METRIC_NAMES = tuple(
    rule_metric_name(name) for name in (*DEBUGGER_RULE_DEFAULTS, *PROFILER_RULE_DEFAULTS)
)


def metric_definitions(
    names: Iterable[str] = (*METRIC_NAMES, *RULE_METRIC_NAMES),
) -> list[dict[str, str]]:
    """SageMaker metric_definitions, one per metric train.py prints; a tuning objective must be one."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in names]


def job_rules(rules: Mapping[str, Any] | None, picked: Any, kind: str) -> dict[str, RuleSpec]:
    """The rules `picked` (backend.<kind>.rules, a list of names) as the shared node `rules` (rules.<kind>,
    conf/rules/*.yaml) configures them for local runs: validated the same way, with the same parameters
    and actions. The backend only picks; a rule switched off in the shared node (null) is off here too.
    ProfilerReport is no rule of ours (see profiler_report_parameters). Raises ValueError naming the key."""
    specs = parse_rule_specs(rules, RULE_DEFAULTS[kind], f"rules.{kind}")
    if isinstance(picked, Mapping):
        raise ValueError(
            f"backend.{kind}.rules lists rule names; their thresholds are set in rules.{kind}.<rule> "
            "(conf/rules/sagemaker.yaml), shared with local runs"
        )
    known = [*RULE_DEFAULTS[kind], *([PROFILER_REPORT] if kind == "profiler" else [])]
    chosen: dict[str, RuleSpec] = {}
    for name in map(str, picked or []):
        if name not in known:
            raise ValueError(f"backend.{kind}.rules: unknown rule {name}; known: {', '.join(known)}")
        if name in specs:
            chosen[name] = specs[name]
        elif name != PROFILER_REPORT:
            log.info("rules.%s.%s is switched off (null): the SageMaker job does not run it", kind, name)
    return chosen


def profiler_report_parameters(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    """ProfilerReport runs every profiler rule itself and takes their parameters as <Rule>_<parameter>:
    the shared thresholds of every profiler rule, so the report agrees with the local one too."""
    specs = parse_rule_specs(rules, PROFILER_RULE_DEFAULTS, "rules.profiler")
    values = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()}, as_text=False)
    return {f"{name}_{key}": value for name, params in values.items() for key, value in params.items()}
