"""The rules' settings, in one place: the rules config (dogbreed/conf/rules/sagemaker.yaml, shipped with the
package: also the Hydra group `rules`) read and checked for local runs and for SageMaker jobs alike.

A local run evaluates the rules of `rules.debugger` / `rules.profiler`; a SageMaker job runs the ones that
`backend.<kind>.rules` picks, with the same parameters and actions (`job_rules`); sagemaker/rules.py only
turns them into the SDK's objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

ACTIONS = ("log", "stop")
# Keys of a rule's node that are ours, not SageMaker rule parameters.
LOCAL_KEYS = ("action", "local")
# SageMaker's profiler report: not a rule of ours but a job that runs every profiler rule itself.
PROFILER_REPORT = "ProfilerReport"


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


def job_rules(rules: Mapping[str, Any] | None, picked: Any, kind: str) -> dict[str, RuleSpec]:
    """The rules `picked` (backend.<kind>.rules, a list of names) as the shared node `rules` (rules.<kind>,
    dogbreed/conf/rules/sagemaker.yaml) configures them for local runs: validated the same way, with the
    same parameters and actions. The backend only picks; a rule switched off in the shared node (null) is
    off here too. ProfilerReport is no rule of ours (see profiler_report_parameters). Raises ValueError
    naming the key."""
    specs = parse_rule_specs(rules, rule_defaults(kind), f"rules.{kind}")
    if isinstance(picked, Mapping):
        raise ValueError(
            f"backend.{kind}.rules lists rule names; their thresholds are set in rules.{kind}.<rule> "
            "(dogbreed/conf/rules/sagemaker.yaml), shared with local runs"
        )
    known = [*rule_defaults(kind), *([PROFILER_REPORT] if kind == "profiler" else [])]
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
    specs = parse_rule_specs(rules, rule_defaults("profiler"), "rules.profiler")
    values = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()}, as_text=False)
    return {f"{name}_{key}": value for name, params in values.items() for key, value in params.items()}
