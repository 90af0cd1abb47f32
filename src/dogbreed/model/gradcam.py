"""Grad-CAM (Selvaraju et al., 2017): the parts of an image that made the network choose a class.

The gradient of the class's logit with respect to the last convolutional block's activations, averaged
over space, weighs each activation channel; the positive part of their weighted sum is the heat map, at the
block's resolution (7 x 7 for a ResNet at 224 px), scaled to [0, 1] per image. It costs one forward pass
of the torch network on the preprocessed batch, recording gradients, and a backward pass through the
classification head alone, back to that block (figures: docs/serving.md). The servers
(dogbreed.serving.explain) and the evaluation report draw their heat maps here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from dogbreed.data.preprocessing import Preprocessing

# The "jet" ramp as anchor colours: dark blue (no evidence) through cyan, yellow, to dark red (most).
_RAMP_AT = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_RAMP_RGB = np.array([[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]])


def gradcam(
    net: nn.Module, batch: torch.Tensor, classes: Sequence[int], layer: nn.Module | None = None
) -> torch.Tensor:
    """Heat maps [N, h, w] in [0, 1] of `classes[i]` for image i of `batch` (preprocessed, [N, 3, H, W]).

    `layer` is the block whose activations are weighed: a ResNet's `layer4` unless told. An image whose
    map is zero everywhere (no positive evidence at all) gets zeros."""
    if len(classes) != len(batch):
        raise ValueError(f"{len(classes)} classes for a batch of {len(batch)} images")
    block: nn.Module = layer if layer is not None else net.get_submodule("layer4")
    captured: list[torch.Tensor] = []
    handle = block.register_forward_hook(lambda module, inputs, output: captured.append(output))
    weights = next(net.parameters())
    try:
        with torch.enable_grad():
            logits = net(batch.to(weights.device, weights.dtype))
            chosen = torch.as_tensor(list(classes), device=logits.device)
            score = logits.gather(1, chosen[:, None]).sum()  # image i's logit depends on image i alone
            (gradients,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    activations = captured[-1].detach()
    channel_weights = gradients.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((channel_weights * activations.float()).sum(dim=1))
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12)[:, None, None]
    return (cam / peak).cpu()


def heatmap_rgba(cam: torch.Tensor, side: int) -> np.ndarray:
    """One map [h, w] as a `side` x `side` RGBA image (uint8): the jet ramp, more opaque where hotter."""
    scaled = F.interpolate(cam[None, None].float(), size=(side, side), mode="bilinear", align_corners=False)
    values = scaled[0, 0].clamp(0, 1).numpy()
    rgba = np.empty((side, side, 4), np.uint8)
    for channel in range(3):
        rgba[..., channel] = np.interp(values, _RAMP_AT, _RAMP_RGB[:, channel]).round()
    rgba[..., 3] = np.round(255 * (0.35 + 0.65 * values))  # cold areas stay see-through
    return rgba


def heatmap_png(cam: torch.Tensor, side: int) -> bytes:
    """heatmap_rgba as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(heatmap_rgba(cam, side), "RGBA").save(out, "PNG", optimize=True)
    return out.getvalue()


def network_view(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """The part of `image` the network sees, at its input size: resized and centre-cropped as the
    evaluation transform does (without normalisation), so a heat map lies exactly on it."""
    interpolation = InterpolationMode(preprocessing.interpolation)
    resized = TF.resize(image, preprocessing.resize_size, interpolation=interpolation, antialias=True)
    return TF.center_crop(resized, preprocessing.crop_size)


def overlay(view: Image.Image, cam: torch.Tensor, opacity: float = 0.6) -> Image.Image:
    """`view` (an RGB network_view) with the heat map blended over it, as RGB."""
    heat = Image.fromarray(heatmap_rgba(cam, view.width), "RGBA")
    if view.size != heat.size:
        heat = heat.resize(view.size, Image.Resampling.BILINEAR)
    alpha = np.asarray(heat.getchannel("A"), np.float32) * opacity
    heat.putalpha(Image.fromarray(alpha.round().astype(np.uint8)))
    return Image.alpha_composite(view.convert("RGBA"), heat).convert("RGB")


def crop_fraction(preprocessing: Preprocessing) -> float:
    """The side of the centred square the network sees, as a share of the photo's shorter side."""
    return preprocessing.crop_size / preprocessing.resize_size
