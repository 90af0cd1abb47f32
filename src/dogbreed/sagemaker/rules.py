"""SageMaker Debugger and Profiler settings of a training job, as the SDK's objects: the hook, the built-in
rules it runs and their parameters. Which rules, and with what parameters and actions, is decided once for
local runs and jobs alike by diagnostics/rule_settings.py; this module only builds the SDK's objects."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from dogbreed.diagnostics.rule_settings import (
    PROFILER_REPORT,
    RuleSpec,
    job_rules,
    profiler_report_parameters,
    sagemaker_rule_parameters,
)
from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)


def debugger_settings(cfg: DictConfig) -> dict[str, Any]:
    """Estimator keyword arguments for SageMaker Debugger (hook + rules) and the profiler.

    backend.debugger.rules / backend.profiler.rules only pick rules; their parameters and actions come from
    the rules node local runs evaluate (dogbreed/conf/rules/sagemaker.yaml): one override changes both.
    """
    settings: dict[str, Any] = {"debugger_hook_config": False, "disable_profiler": True}
    debugger = cfg.backend.get("debugger") or {}
    if debugger.get("enabled"):
        hook, rules = debugger_hook_and_rules(cfg, debugger)
        settings.update(debugger_hook_config=hook, rules=rules)
    profiler = cfg.backend.get("profiler") or {}
    if profiler.get("enabled"):
        from sagemaker.debugger import ProfilerConfig

        settings["disable_profiler"] = False
        settings["profiler_config"] = ProfilerConfig(
            system_monitor_interval_millis=int(profiler.system_monitor_interval_millis)
        )
        settings.setdefault("rules", []).extend(profiler_rules(cfg, profiler))
    return settings


def debugger_hook_and_rules(cfg: DictConfig, debugger: Any) -> tuple[Any, list]:
    """The hook saving the configured collections, and the picked built-in rules."""
    from sagemaker.debugger import CollectionConfig, DebuggerHookConfig

    collections = {
        name: CollectionConfig(name=name, parameters={k: str(v) for k, v in params.items()})
        for name, params in debugger.collections.items()
    }
    hook = DebuggerHookConfig(collection_configs=list(collections.values()))
    specs = _job_rules(cfg, "debugger")
    parameters = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()})
    return hook, [debugger_rule(spec, parameters[name], collections) for name, spec in specs.items()]


def debugger_rule(spec: RuleSpec, parameters: dict[str, str], collections: dict[str, Any]) -> Any:
    from sagemaker.debugger import Rule, rule_configs

    base = getattr(rule_configs, _snake(spec.name))()
    # A rule brings its own collection settings (e.g. gradients every 500 steps); the SDK merges them
    # with the hook's through a set, so either could win. Give the rule ours for the same collection.
    wanted = [c["CollectionName"] for c in base.get("CollectionConfigurations", [])]
    ours = [collections[c] for c in wanted if c in collections] or None
    # action: stop ends a local run; on SageMaker the same rule stops the job (the role needs
    # sagemaker:StopTrainingJob, or the rule only reports).
    actions = rule_configs.StopTraining() if spec.action == "stop" else None
    return Rule.sagemaker(base, rule_parameters=parameters, collections_to_save=ours, actions=actions)


def profiler_rules(cfg: DictConfig, profiler: Any) -> list:
    """The picked profiler rules (and ProfilerReport), with the shared thresholds."""
    from sagemaker.debugger import ProfilerRule, rule_configs

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
                    log.warning("rules.profiler.%s.action=stop: SageMaker profiler rules only report", name)
                bases.append(getattr(rule_configs, name)(**values[name]))
    except (AssertionError, TypeError) as e:
        raise SageMakerSetupError(f"rules.profiler: SageMaker rejects a value: {e}") from None
    return [ProfilerRule.sagemaker(base) for base in bases]


def _job_rules(cfg: DictConfig, kind: str) -> dict[str, RuleSpec]:
    try:
        return job_rules(cfg.rules.get(kind), cfg.backend[kind].get("rules"), kind)
    except ValueError as e:
        raise SageMakerSetupError(str(e)) from None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
