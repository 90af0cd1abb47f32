"""SageMaker Debugger and profiler: the request sections, and the hook side inside the job."""

from __future__ import annotations

import json
import logging

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from dogbreed.diagnostics.rule_settings import sagemaker_rule_parameters
from dogbreed.model.network import build_network
from dogbreed.sagemaker.container.smdebug_hook import debugger_callbacks, trainable_modules
from dogbreed.sagemaker.session import SageMakerSetupError
from dogbreed.sagemaker.training_job import launch_training
from tests.conftest import TINY, compose_config

# SageMaker Debugger's hook needs smdebug in the image: a training image of one's own that has it.
SMDEBUG_IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/dogbreed-train:smdebug"


def dry_run(tmp_path, overrides: list[str]) -> tuple[dict, DictConfig]:
    overrides = [
        "backend=sagemaker",
        "backend.dry_run=true",
        "experiment=smoke",
        "backend.debugger.enabled=true",
        "backend.profiler.enabled=true",
        f"backend.image_uri={SMDEBUG_IMAGE}",
        *overrides,
    ]
    cfg = compose_config(tmp_path, overrides)
    return launch_training(cfg, overrides), cfg


def debug_rules(request: dict) -> dict[str, dict[str, str]]:
    return {r["RuleConfigurationName"]: r["RuleParameters"] for r in request["DebugRuleConfigurations"]}


def test_dry_run_request_has_debugger_hook_rules_and_profiler(no_aws, tmp_path):
    # Thresholds overridden in the shared rules node; debugger=on / profiler=on: the local callbacks too.
    request, cfg = dry_run(
        tmp_path,
        [
            "rules.debugger.VanishingGradient.threshold=0.0001",
            "rules.profiler.CPUBottleneck.cpu_threshold=80",
            "backend.debugger.collections.gradients.save_interval=50",
            "debugger=on",
            "profiler=on",
        ],
    )

    hook = request["DebugHookConfig"]
    assert hook["S3OutputPath"].startswith("s3://set-backend-bucket/dogbreed/output")
    collections = {
        c["CollectionName"]: c.get("CollectionParameters", {}) for c in hook["CollectionConfigurations"]
    }
    assert {"losses", "gradients", "weights", "biases"} <= set(collections)
    assert collections["gradients"]["save_interval"] == "50"
    rules = debug_rules(request)
    expected = {
        "VanishingGradient",
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
        "LossNotDecreasing",
    }
    assert set(rules) == expected
    assert all(r["RuleEvaluatorImage"] for r in request["DebugRuleConfigurations"])
    # The job's rules and the local ones read the one rules node: the override reaches both ...
    assert rules["VanishingGradient"]["threshold"] == "0.0001"
    local_debugger = instantiate(cfg.callbacks.debugger)
    assert local_debugger.specs["VanishingGradient"]["threshold"] == pytest.approx(0.0001)
    # ... and every parameter the local rule has is what the job's rule is given (SageMaker names).
    for name in expected:
        local = sagemaker_rule_parameters({name: local_debugger.specs[name].parameters})[name]
        assert local.items() <= rules[name].items(), name
    assert rules["Overfit"]["ratio_threshold"] == "0.1" and "patience_train" not in rules["Overfit"]
    assert "action_json" not in rules["VanishingGradient"]  # action: log
    # The job's own config (its hyperparameters) carries the override as well, for rules run inside it.
    hyperparameters = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    assert hyperparameters["rules.debugger.VanishingGradient.threshold"] == "0.0001"

    assert request["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 500
    profiler_rules = {
        r["RuleConfigurationName"]: r["RuleParameters"] for r in request["ProfilerRuleConfigurations"]
    }
    assert {"ProfilerReport", "LowGPUUtilization", "CPUBottleneck"} <= set(profiler_rules)
    local_profiler = instantiate(cfg.callbacks.profiler)
    assert local_profiler.specs["CPUBottleneck"]["cpu_threshold"] == 80
    assert profiler_rules["CPUBottleneck"]["cpu_threshold"] == "80"
    assert profiler_rules["CPUBottleneck"]["patience"] == "1000"
    # ProfilerReport runs the profiler rules itself: it is given the same thresholds
    assert profiler_rules["ProfilerReport"]["CPUBottleneck_cpu_threshold"] == "80"
    assert profiler_rules["ProfilerReport"]["IOBottleneck_io_threshold"] == "50"
    # The backend file only picks rules; no thresholds of its own
    assert all(isinstance(name, str) for name in cfg.backend.debugger.rules)


def test_shared_rule_switches_and_actions_reach_the_job(no_aws, tmp_path):
    request, _ = dry_run(
        tmp_path, ["rules.debugger.Overfit=null", "rules.debugger.VanishingGradient.action=stop"]
    )
    rules = debug_rules(request)
    assert "Overfit" not in rules  # switched off for local runs: off for the job too
    assert "stoptraining" in rules["VanishingGradient"]["action_json"]  # action: stop -> StopTraining
    assert "action_json" not in rules["Overtraining"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend.debugger.rules=[DeadRelu]", "backend.debugger.rules: unknown rule DeadRelu"),
        ("+rules.debugger.Overfit.patience_x=1", "rules.debugger.Overfit: unknown parameter(s) patience_x"),
        ("rules.profiler.CPUBottleneck.threshold=150", "rules.profiler: SageMaker rejects a value"),
    ],
)
def test_bad_rule_settings_stop_the_launch_with_the_key(no_aws, tmp_path, override, message):
    with pytest.raises(SageMakerSetupError) as raised:
        dry_run(tmp_path, [override])
    assert message in str(raised.value)


def test_sagemaker_debugger_without_an_smdebug_image_is_refused_not_silently_empty(no_aws, tmp_path):
    # The PyTorch container has no smdebug: the hook would be skipped and the rules would watch nothing.
    overrides = ["backend=sagemaker", "backend.dry_run=true", "backend.debugger.enabled=true"]
    with pytest.raises(SageMakerSetupError, match=r"debugger\.enabled=true.*use debugger=on"):
        launch_training(compose_config(tmp_path, overrides), overrides)


def test_only_trainable_modules_are_hooked_with_a_frozen_backbone():
    net = build_network("resnet18", 3, None, None, 0.0)
    for name, parameter in net.named_parameters():
        parameter.requires_grad = name.startswith(("layer4", "fc"))
    hooked = trainable_modules(net)
    assert hooked == [net.layer4, net.fc]
    assert all(p.requires_grad for m in hooked for p in m.parameters())
    everything = nn.Sequential(nn.Linear(2, 2))
    assert trainable_modules(everything) == [everything]


def test_without_smdebug_the_job_says_so_once_and_trains_on(tmp_path, caplog):
    try:
        import smdebug  # noqa: F401

        pytest.skip("smdebug is installed here")
    except ImportError:
        pass
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "debughookconfig.json").write_text(json.dumps({"LocalPath": str(tmp_path / "tensors")}))
    with caplog.at_level(logging.WARNING):
        assert debugger_callbacks(tmp_path) == []
    assert [r.message for r in caplog.records if "smdebug cannot be imported" in r.message]
    assert debugger_callbacks(tmp_path / "no-config") == []


@pytest.mark.slow
def test_smdebug_hook_writes_losses_and_gradients_with_a_frozen_backbone(shapes3, tmp_path):
    pytest.importorskip("smdebug", reason="the smdebug extra is not installed")
    from smdebug.trials import create_trial

    from dogbreed.training.fit import fit

    config = tmp_path / "job" / "input" / "config"
    config.mkdir(parents=True)
    tensors = tmp_path / "tensors"
    (config / "debughookconfig.json").write_text(
        json.dumps(
            {  # as SageMaker writes the estimator's DebuggerHookConfig into the job
                "LocalPath": str(tensors),
                "S3OutputPath": "s3://b/debug-output",
                "CollectionConfigurations": [
                    {"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}},
                    {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "1"}},
                ],
            }
        )
    )
    callbacks = debugger_callbacks(tmp_path / "job")
    assert len(callbacks) == 1
    overrides = [
        *TINY,
        f"data.root={shapes3}",
        "data.images_per_class=8",
        "trainer.max_epochs=1",
        "export=false",
    ]
    # model.freeze=layer4: the stem and layers 1-3 are frozen, the case that crashes unrestricted hooks.
    fit(compose_config(tmp_path / "run", [*overrides, "model.freeze=layer4"]), extra_callbacks=callbacks)

    trial = create_trial(str(tensors))
    losses = trial.tensor_names(collection="losses")
    gradients = trial.tensor_names(collection="gradients")
    assert losses and gradients
    loss = trial.tensor(losses[0])
    assert all(float(loss.value(step)) > 0 for step in loss.steps())
    # Only the trainable blocks (layer4 and the head, registered on their own) have gradients saved.
    assert not [name for name in gradients if "layer1" in name or name.startswith("gradient/ResNet")]
    layer4_parameters = sum(1 for _ in build_network("resnet18", 3, None, None, 0.0).layer4.parameters())
    assert len(gradients) >= layer4_parameters
