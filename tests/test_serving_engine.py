"""The inference engine's optimisations answer as the exported network does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dogbreed.serving.engine import InferenceEngine

pytestmark = pytest.mark.slow  # needs the shared tiny training run


@pytest.mark.parametrize(("optimize", "tolerance"), [("fuse", 1e-4), ("bf16", 3e-2)])
def test_optimised_engines_give_the_exported_network_answers(trained_run: Path, shapes3, optimize, tolerance):
    images = sorted((shapes3 / "test").rglob("*.jpg"))[:6]
    reference = InferenceEngine.load(trained_run / "model", device="cpu", optimize="none")
    engine = InferenceEngine.load(trained_run / "model", device="cpu", optimize=optimize)
    batch = reference.preprocess(images)
    expected = reference.probabilities(batch)
    got = engine.probabilities(batch)
    weights_dtype = torch.bfloat16 if optimize == "bf16" else torch.float32
    assert {p.dtype for p in engine.net.parameters()} == {weights_dtype}
    assert got.dtype == torch.float32 and torch.allclose(got.sum(dim=1), torch.ones(len(images)))
    assert (got - expected).abs().max() <= tolerance
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))
