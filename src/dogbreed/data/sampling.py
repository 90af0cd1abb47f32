"""Randomness that depends on (seed, epoch) alone, so a resumed run draws what the uninterrupted one drew
(see dogbreed.training.resume)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed for (seed, epoch), well mixed (NumPy's SeedSequence), one per independent stream."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


class EpochSeededLoader(DataLoader):
    """A shuffling DataLoader whose order and worker seeds in epoch e depend on (seed, e) only."""

    def __init__(self, *args: Any, seed: int, generator: torch.Generator | None = None, **kwargs: Any):
        # `generator` is accepted because Lightning re-creates loaders with their own arguments (DDP).
        super().__init__(*args, generator=generator or torch.Generator(), **kwargs)  # type: ignore[misc]
        self.seed = seed
        self.epoch = 0  # the epoch the next iterator serves

    def __iter__(self):
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        self.epoch += 1
        return super().__iter__()
