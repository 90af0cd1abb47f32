"""The metric lines a job prints and the regexes that read them (its metric definitions): generated from
the names train.py logs, so a tuning objective and its regex always match what is printed."""

from __future__ import annotations

from collections.abc import Iterable

from dogbreed.diagnostics.outcomes import rule_metric_name
from dogbreed.diagnostics.rule_settings import rule_defaults
from dogbreed.training.metric_lines import METRIC_NAMES, metric_regex

# debugger=on / profiler=on print one `rule/<name>=<status>` line per rule (diagnostics/outcomes.py).
RULE_METRIC_NAMES = tuple(
    rule_metric_name(name) for name in (*rule_defaults("debugger"), *rule_defaults("profiler"))
)


def metric_definitions(
    names: Iterable[str] = (*METRIC_NAMES, *RULE_METRIC_NAMES),
) -> list[dict[str, str]]:
    """SageMaker metric_definitions, one per metric train.py prints; a tuning objective must be one."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in names]
