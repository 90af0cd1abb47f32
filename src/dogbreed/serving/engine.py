"""The model as a server runs it: loaded once, tuned for inference, fed decoded images in batches.

Both the local server and the SageMaker handler go through this class, so they answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from dogbreed.acceleration import available_cpus
from dogbreed.export import BreedModel, load_model
from dogbreed.serving.decoding import EncodedImage, decode_image

OPTIMIZATIONS = ("none", "fuse", "compile")


def configure_threads(threads: int | None) -> int:
    """One intra-op thread per available CPU unless told otherwise; returns the count set."""
    threads = threads or available_cpus()
    torch.set_num_threads(threads)
    return threads


def fuse_conv_bn(net: nn.Module) -> nn.Module:
    """Fold each BatchNorm into the convolution before it (eval mode only): one kernel instead of two."""
    from torch.fx.experimental.optimization import fuse

    return fuse(net.eval(), inplace=False)


def compile_for_inference(net: nn.Module) -> nn.Module:
    """torch.compile (inductor) with the weights frozen into constants: about 2x the eager forward pass on
    a CPU here. The batch dimension is dynamic, so one compilation serves every batch size above 1 (batch 1
    gets its own); warm_up() pays for both before the server answers /ping."""
    return torch.compile(net, dynamic=True, options={"freezing": True})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class InferenceEngine:
    """A BreedModel ready to serve: channels_last, inference mode; `optimize` folds BatchNorm into the
    convolutions (fuse) and, with compile, also compiles the network (slow start, fast answers)."""

    def __init__(self, model: BreedModel, optimize: str = "fuse"):
        if optimize not in OPTIMIZATIONS:
            raise ValueError(f"optimize={optimize} is not one of {', '.join(OPTIMIZATIONS)}")
        self.model = model
        self.class_names = model.class_names
        self.draft_size = model.preprocessing.resize_size  # as evaluation decodes JPEGs
        self.device = model.device
        net = model.net if optimize == "none" else fuse_conv_bn(model.net)
        net = net.to(self.device, memory_format=torch.channels_last).eval()
        model.net = net  # keep one copy of the weights in memory, not the unfused one too
        self.net = compile_for_inference(net) if optimize == "compile" else net

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto", optimize: str = "fuse") -> InferenceEngine:
        return cls(load_model(model_dir, device=resolve_device(device)), optimize=optimize)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def decode(self, images: Sequence[EncodedImage]) -> list[Image.Image]:
        return [decode_image(image, self.draft_size) for image in images]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's own evaluation transform (resize, centre crop, normalise): [N, 3, H, W]."""
        return self.model.preprocess(images)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.net(batch).float(), dim=1).cpu()

    def predict_encoded(self, images: Sequence[EncodedImage]) -> torch.Tensor:
        """Decode, preprocess and run a list of checked images in one batch: probabilities [N, C]."""
        return self.probabilities(self.preprocess(self.decode(images)))

    def warm_up(self) -> None:
        """Forward passes at the serving size, so the first requests pay neither for allocator set-up nor,
        with optimize=compile, for compiling (batch 1, then the dynamic batch size)."""
        size = self.model.preprocessing.crop_size
        for batch_size in (1, 2):
            self.probabilities(torch.zeros(batch_size, 3, size, size))
