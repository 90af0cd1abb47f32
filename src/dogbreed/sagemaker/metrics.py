"""The metric lines a job prints and the regexes that read them (its metric definitions): generated from
the names train.py logs, so a tuning objective and its regex always match what is printed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from dogbreed.callbacks import METRIC_NAMES
from dogbreed.diagnostics.debugger_rules import DEBUGGER_RULE_DEFAULTS
from dogbreed.diagnostics.outcomes import rule_metric_name
from dogbreed.diagnostics.profiler_rules import PROFILER_RULE_DEFAULTS

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
