"""The hardware path: precision chosen for the machine, torch.compile switched by config."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo import register_backend

from dogbreed.modeldir.reader import load_model
from dogbreed.training.acceleration import resolve_precision
from dogbreed.training.fit import fit
from tests.conftest import TINY, compose_config


def test_auto_precision_is_fp32_without_a_gpu_and_explicit_values_pass_through(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "auto") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision(16, "auto") == 16


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_precision_on_a_gpu_is_mixed_unless_the_run_is_pinned_to_the_cpu(monkeypatch, bf16, expected):
    # No GPU here: torch's own answers are replaced, the decision is ours.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "gpu") == expected
    assert resolve_precision("auto", "cpu") == "32-true"


def test_default_trainer_precision_is_auto(tmp_path):
    assert compose_config(tmp_path).trainer.precision == "auto"


GRAPHS: list[torch.fx.GraphModule] = []


@register_backend
def recording_backend(graph: torch.fx.GraphModule, example_inputs):
    """A torch.compile backend that keeps the graphs it is given and runs them as they are."""
    GRAPHS.append(graph)
    return graph.forward


@pytest.mark.slow
def test_compile_hands_the_network_to_torch_compile_and_exports_plain_weights(shapes3, tmp_path):
    GRAPHS.clear()
    torch._dynamo.reset()
    overrides = [*TINY, f"data.root={shapes3}", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    fit(compose_config(tmp_path, [*overrides, "compile.enabled=true", "compile.backend=recording_backend"]))
    convolutions = [
        node for graph in GRAPHS for node in graph.graph.nodes if "conv2d" in str(node.target).lower()
    ]
    assert len(convolutions) >= 20, "the ResNet18's convolutions should have been compiled"
    # The exported weights keep plain names (no _orig_mod. prefix) and load into an uncompiled network.
    state = torch.load(tmp_path / "model" / "weights.pt", weights_only=True)
    assert not any("_orig_mod" in key for key in state)
    model = load_model(tmp_path / "model")
    assert model.net.fc[-1].out_features == 3


def test_loader_workers_are_sized_to_the_cpus_this_process_may_use(shapes3, tmp_path):
    from hydra.utils import instantiate

    from dogbreed.training.acceleration import available_cpus

    cfg = compose_config(tmp_path, [f"data.root={shapes3}", "data.prefetch_factor=4"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert loader.num_workers == max(1, min(32, available_cpus() - 1))
    assert loader.prefetch_factor == 4 and loader.persistent_workers
