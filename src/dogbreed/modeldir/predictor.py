"""Prediction from an exported model: preprocessing, network and class names together
(loaded by dogbreed.modeldir.reader.load_model)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from dogbreed.data.images import load_rgb, to_rgb
from dogbreed.data.preprocessing import Preprocessing
from dogbreed.modeldir.format import display_name


@dataclass
class Prediction:
    index: int
    class_name: str
    label: str
    probability: float


class BreedModel:
    """An exported model loaded for inference: preprocessing, network and class names together."""

    def __init__(self, net: nn.Module, class_names: list[str], preprocessing: Preprocessing, arch: str):
        self.net = net.eval()
        self.class_names = class_names
        self.preprocessing = preprocessing
        self.arch = arch
        self.transform = preprocessing.eval_transform()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> BreedModel:
        self.net.to(device)
        return self

    @property
    def draft_size(self) -> int:
        """The size JPEGs are decoded for (PIL's draft mode skips resolution the resize throws away).
        Every inference path decodes this way (predict, evaluation, the servers), as training evaluates."""
        return self.preprocessing.resize_size

    def decode(self, image: Image.Image | str | Path | bytes) -> Image.Image:
        """An upright RGB image from a file path, encoded bytes or a PIL image."""
        if isinstance(image, Image.Image):
            return to_rgb(image)
        source = io.BytesIO(image) if isinstance(image, bytes) else image
        return load_rgb(source, draft_size=self.draft_size)

    def preprocess(self, images: Iterable[Image.Image | str | Path | bytes]) -> torch.Tensor:
        return torch.stack([self.transform(self.decode(image)) for image in images])

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes for a preprocessed batch [N, 3, H, W], on the network's device and in
        its dtype (bf16 when a server made it so); float32 [N, C] on the CPU."""
        weights = next(self.net.parameters())
        batch = batch.to(weights.device, weights.dtype, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.net(batch).float(), dim=1).cpu()

    def predict(
        self, images: Iterable[Image.Image | str | Path | bytes], topk: int = 5
    ) -> list[list[Prediction]]:
        """Top-k breeds for each image (PIL images, file paths or encoded bytes)."""
        probs = self.probabilities(self.preprocess(images))
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        return [
            [
                Prediction(int(i), self.class_names[i], display_name(self.class_names[i]), float(p))
                for p, i in zip(row_values.tolist(), row_indices.tolist(), strict=True)
            ]
            for row_values, row_indices in zip(values, indices, strict=True)
        ]
