"""SageMaker Debugger and Profiler settings of a training job: the hook, the built-in rules it runs and
their parameters, read from the shared `rules` node local runs use (dogbreed/conf/rules/sagemaker.yaml)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from dogbreed.diagnostics.outcomes import RuleSpec, parse_rule_specs, rule_defaults, sagemaker_rule_parameters
from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)

RULE_DEFAULTS = {"debugger": rule_defaults("debugger"), "profiler": rule_defaults("profiler")}
# SageMaker's profiler report: not a rule of ours but a job that runs every profiler rule itself.
PROFILER_REPORT = "ProfilerReport"


def debugger_settings(cfg: DictConfig) -> dict[str, Any]:
    """Estimator keyword arguments for SageMaker Debugger (hook + rules) and the profiler.

    backend.debugger.rules / backend.profiler.rules only pick rules; their parameters and actions come from
    the rules node local runs evaluate (dogbreed/conf/rules/sagemaker.yaml): one override changes both.
    """
    from sagemaker.debugger import (
        CollectionConfig,
        DebuggerHookConfig,
        ProfilerConfig,
        ProfilerRule,
        Rule,
        rule_configs,
    )

    backend = cfg.backend
    settings: dict[str, Any] = {"debugger_hook_config": False, "disable_profiler": True}
    debugger = backend.get("debugger") or {}
    if debugger.get("enabled"):
        collections = {
            name: CollectionConfig(name=name, parameters={k: str(v) for k, v in params.items()})
            for name, params in debugger.collections.items()
        }
        settings["debugger_hook_config"] = DebuggerHookConfig(collection_configs=list(collections.values()))
        specs = _job_rules(cfg, "debugger")
        parameters = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()})
        rules = []
        for name, spec in specs.items():
            base = getattr(rule_configs, _snake(name))()
            # A rule brings its own collection settings (e.g. gradients every 500 steps); the SDK merges them
            # with the hook's through a set, so either could win. Give the rule ours for the same collection.
            wanted = [c["CollectionName"] for c in base.get("CollectionConfigurations", [])]
            ours = [collections[c] for c in wanted if c in collections] or None
            # action: stop ends a local run; on SageMaker the same rule stops the job (the role needs
            # sagemaker:StopTrainingJob, or the rule only reports).
            actions = rule_configs.StopTraining() if spec.action == "stop" else None
            rules.append(
                Rule.sagemaker(
                    base, rule_parameters=parameters[name], collections_to_save=ours, actions=actions
                )
            )
        settings["rules"] = rules
    profiler = backend.get("profiler") or {}
    if profiler.get("enabled"):
        settings["disable_profiler"] = False
        settings["profiler_config"] = ProfilerConfig(
            system_monitor_interval_millis=int(profiler.system_monitor_interval_millis)
        )
        specs = _job_rules(cfg, "profiler")
        values = sagemaker_rule_parameters({n: s.parameters for n, s in specs.items()}, as_text=False)
        bases = []
        try:  # the rule classes check their values (percentages within 0-100, positive integers)
            for name in map(str, profiler.rules or []):
                if name == PROFILER_REPORT:
                    shared = profiler_report_parameters(cfg.rules.get("profiler"))
                    bases.append(rule_configs.ProfilerReport(**shared))
                elif name in specs:  # not: switched off in rules.profiler
                    if specs[name].action == "stop":
                        log.warning(
                            "rules.profiler.%s.action=stop: SageMaker profiler rules only report", name
                        )
                    bases.append(getattr(rule_configs, name)(**values[name]))
        except (AssertionError, TypeError) as e:
            raise SageMakerSetupError(f"rules.profiler: SageMaker rejects a value: {e}") from None
        settings.setdefault("rules", []).extend(ProfilerRule.sagemaker(base) for base in bases)
    return settings


def _job_rules(cfg: DictConfig, kind: str) -> dict[str, RuleSpec]:
    try:
        return job_rules(cfg.rules.get(kind), cfg.backend[kind].get("rules"), kind)
    except ValueError as e:
        raise SageMakerSetupError(str(e)) from None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def job_rules(rules: Mapping[str, Any] | None, picked: Any, kind: str) -> dict[str, RuleSpec]:
    """The rules `picked` (backend.<kind>.rules, a list of names) as the shared node `rules` (rules.<kind>,
    dogbreed/conf/rules/sagemaker.yaml) configures them for local runs: validated the same way, with the
    same parameters and actions. The backend only picks; a rule switched off in the shared node (null) is
    off here too. ProfilerReport is no rule of ours (see profiler_report_parameters). Raises ValueError
    naming the key."""
    specs = parse_rule_specs(rules, RULE_DEFAULTS[kind], f"rules.{kind}")
    if isinstance(picked, Mapping):
        raise ValueError(
            f"backend.{kind}.rules lists rule names; their thresholds are set in rules.{kind}.<rule> "
            "(dogbreed/conf/rules/sagemaker.yaml), shared with local runs"
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
    specs = parse_rule_specs(rules, RULE_DEFAULTS["profiler"], "rules.profiler")
    values = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()}, as_text=False)
    return {f"{name}_{key}": value for name, params in values.items() for key, value in params.items()}
