"""The inference engine's optimisations answer as the exported network does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dogbreed.serving.engine import InferenceEngine

pytestmark = pytest.mark.slow  # needs the shared tiny training run; compiling takes a while


@pytest.mark.parametrize("optimize", ["fuse", "compile"])
def test_optimised_engines_give_the_exported_network_probabilities(trained_run: Path, shapes3, optimize):
    images = sorted((shapes3 / "test").rglob("*.jpg"))[:5]
    reference = InferenceEngine.load(trained_run / "model", device="cpu", optimize="none")
    engine = InferenceEngine.load(trained_run / "model", device="cpu", optimize=optimize)
    engine.warm_up()
    batch = reference.preprocess(images)
    expected = reference.probabilities(batch)
    for rows in (batch[:1], batch):  # batch 1 and the dynamic batch size
        assert torch.allclose(engine.probabilities(rows), expected[: len(rows)], atol=1e-4)
    if optimize == "compile":
        assert engine.net is not engine.model.net, "the network should run compiled"
