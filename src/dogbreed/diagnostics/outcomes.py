"""Rule outcomes as SageMaker reports them (the rules' settings: diagnostics/rule_settings.py)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from dogbreed.diagnostics.rule_settings import RuleSpec

log = logging.getLogger(__name__)

NO_ISSUES = "NoIssuesFound"
ISSUES = "IssuesFound"
NOT_EVALUATED = "NotEvaluated"


@dataclass
class Finding:
    """What a rule check saw: an issue (with the step and numbers that triggered it) or a clean pass."""

    issue: bool
    message: str
    step: int | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class RuleOutcome:
    rule: str
    kind: str  # "debugger" or "profiler"
    status: str  # NoIssuesFound, IssuesFound or NotEvaluated
    message: str
    step: int | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    action: str = "log"
    recommendation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A rule's status as a number, so a job's metric definitions (a regex per `name=value` line) can carry it to
# the console and CloudWatch: 1 issues found, 0 none, -1 not evaluated.
RULE_STATUS_VALUES = {"IssuesFound": 1, "NoIssuesFound": 0, "NotEvaluated": -1}


def rule_metric_name(rule: str) -> str:
    return f"rule/{rule}"


def rule_metric_lines(outcomes: list[dict[str, Any]]) -> str:
    """`rule/Overfit=1.000000` lines (MetricLinePrinter's format), one per evaluated rule outcome."""
    return "\n".join(
        f"{rule_metric_name(o['rule'])}={float(RULE_STATUS_VALUES.get(o['status'], -1)):.6f}"
        for o in outcomes
    )


def outcome_from(spec: RuleSpec, kind: str, finding: Finding | None, recommendation: str) -> RuleOutcome:
    """The outcome of a rule given its first issue, or its latest clean check, or nothing (not evaluated)."""
    if finding is None:
        status, message = NOT_EVALUATED, "not enough data to evaluate this rule"
    else:
        status, message = (ISSUES if finding.issue else NO_ISSUES), finding.message
    return RuleOutcome(
        rule=spec.name,
        kind=kind,
        status=status,
        message=message,
        step=finding.step if finding else None,
        numbers=dict(finding.numbers) if finding else {},
        parameters=dict(spec.parameters),
        action=spec.action,
        recommendation=recommendation if status == ISSUES else "",
    )


def not_evaluated(spec: RuleSpec, kind: str, reason: str) -> RuleOutcome:
    return RuleOutcome(
        spec.name, kind, NOT_EVALUATED, reason, parameters=dict(spec.parameters), action=spec.action
    )


def act_on_issue(trainer: Any, spec: RuleSpec, finding: Finding) -> None:
    """Log the issue; with action=stop end training after this step, as SageMaker's StopTraining does."""
    log.warning("rule %s: IssuesFound at step %s: %s", spec.name, finding.step, finding.message)
    if spec.action == "stop" and trainer is not None:
        log.warning("rule %s: action=stop, stopping training", spec.name)
        trainer.should_stop = True
