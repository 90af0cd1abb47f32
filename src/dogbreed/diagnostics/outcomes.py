"""Rule outcomes as SageMaker reports them, and the rule settings read from the rules config
(dogbreed/conf/rules/sagemaker.yaml, shipped with the package: also the Hydra group `rules`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

NO_ISSUES = "NoIssuesFound"
ISSUES = "IssuesFound"
NOT_EVALUATED = "NotEvaluated"
ACTIONS = ("log", "stop")
# Keys of a rule's node that are ours, not SageMaker rule parameters.
LOCAL_KEYS = ("action", "local")


@cache
def shipped_rule_settings() -> dict[str, dict[str, dict[str, Any]]]:
    """The rules config as shipped: {"debugger"|"profiler": {rule name: settings, our keys included}}."""
    text = files("dogbreed.conf").joinpath("rules/sagemaker.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text))  # type: ignore[return-value]


def rule_defaults(kind: str) -> dict[str, dict[str, Any]]:
    """SageMaker's default parameters of each rule of `kind` (debugger or profiler), without our keys."""
    return {
        name: {k: v for k, v in settings.items() if k not in LOCAL_KEYS}
        for name, settings in shipped_rule_settings()[kind].items()
    }


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


@dataclass
class RuleSpec:
    """One configured rule: its SageMaker parameters, our action, and local-only settings."""

    name: str
    parameters: dict[str, Any]
    action: str = "log"
    local: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.parameters[key]


def parse_rule_specs(
    node: Mapping[str, Any] | None, known: Mapping[str, Mapping[str, Any]], where: str
) -> dict[str, RuleSpec]:
    """Validate `node` (rule name -> settings) against `known` (rule name -> default parameters).

    Missing parameters take the defaults; unknown rule names, parameters or actions are errors naming
    the config key at fault (`where` is that node's path, e.g. rules.debugger).
    """
    specs: dict[str, RuleSpec] = {}
    for name, settings in (node or {}).items():
        if settings is None:
            continue  # `rules.debugger.Overfit=null` switches a rule off
        if name not in known:
            raise ValueError(f"{where}.{name}: unknown rule; known rules: {', '.join(known)}")
        settings = dict(settings)
        action = str(settings.pop("action", "log"))
        if action not in ACTIONS:
            raise ValueError(f"{where}.{name}.action={action} is not one of {', '.join(ACTIONS)}")
        local = dict(settings.pop("local", None) or {})
        unknown = sorted(set(settings) - set(known[name]))
        if unknown:
            raise ValueError(
                f"{where}.{name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known[name])}"
            )
        specs[name] = RuleSpec(name, {**known[name], **settings}, action, local)
    return specs


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


def sagemaker_rule_parameters(
    node: Mapping[str, Any] | None, as_text: bool = True
) -> dict[str, dict[str, Any]]:
    """Each rule's SageMaker parameters from a rules node (its debugger or profiler part), our own keys
    and null values removed, so a SageMaker launch configures the same rules with the same thresholds as
    local runs. as_text: values as the strings `Rule.sagemaker(..., rule_parameters=...)`
    takes; otherwise as they are, for the profiler rule classes, which check them as numbers."""
    out: dict[str, dict[str, Any]] = {}
    for name, settings in (node or {}).items():
        if settings is None:
            continue
        params = {k: v for k, v in dict(settings).items() if k not in LOCAL_KEYS and v is not None}
        if as_text:
            params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
        out[name] = params
    return out
