"""Preprocessing's training and evaluation transforms applied to a batch of decoded images on any device.

The GPU input path (`data.decode=gpu`) decodes a batch on the training device and transforms it here, in
the main process, instead of in the loader workers. The training transform draws from the same
distributions as `Preprocessing.train_transform` (torchvision's RandomResizedCrop and RandomHorizontalFlip
in the workers): the crop boxes follow RandomResizedCrop's own sampling rule, drawn for the whole batch at
once, and each crop is resized by torchvision's `resized_crop`. The draws come from the main process's
torch generator, which EpochSeeding reseeds at each epoch. Evaluation applies the weights' own preset to
each image, as the CPU path does.

Nothing here assumes CUDA: the same code runs on CPU tensors, which is how the tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from dogbreed.data.preprocessing import CROP_RATIO, Preprocessing

# RandomResizedCrop tries this many (area, aspect ratio) draws before it falls back to a centre crop.
CROP_ATTEMPTS = 10


def sample_crop_boxes(
    heights: torch.Tensor,
    widths: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float] = CROP_RATIO,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(top, left, height, width) of one random crop per image, by RandomResizedCrop.get_params' rule.

    Each image gets up to CROP_ATTEMPTS draws of an area fraction (uniform in `scale`) and an aspect ratio
    (log-uniform in `ratio`); the first whose box fits is placed uniformly. When none fits, the whole
    image is taken, cut to the nearest allowed aspect ratio and centred.
    """
    n = len(heights)
    h_in, w_in = heights.double(), widths.double()
    area = (h_in * w_in)[:, None]
    fraction = torch.empty(n, CROP_ATTEMPTS, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    log_aspect = torch.empty(n, CROP_ATTEMPTS, dtype=torch.float64)
    aspect = torch.exp(log_aspect.uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator))
    w = torch.round(torch.sqrt(area * fraction * aspect))
    h = torch.round(torch.sqrt(area * fraction / aspect))
    fits = (w > 0) & (w <= w_in[:, None]) & (h > 0) & (h <= h_in[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first attempt that fits
    found = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)

    in_ratio = w_in / h_in
    fallback_w = torch.where(in_ratio > max(ratio), torch.round(h_in * max(ratio)), w_in)
    fallback_h = torch.where(in_ratio < min(ratio), torch.round(w_in / min(ratio)), h_in)
    h = torch.where(found, h, fallback_h)
    w = torch.where(found, w, fallback_w)
    place = torch.rand(2, n, dtype=torch.float64, generator=generator)
    top = torch.where(
        found, torch.floor(place[0] * (h_in - h + 1)), torch.div(h_in - h, 2, rounding_mode="floor")
    )
    left = torch.where(
        found, torch.floor(place[1] * (w_in - w + 1)), torch.div(w_in - w, 2, rounding_mode="floor")
    )
    return torch.stack([top, left, h, w], dim=1).long()


def normalize_batch(batch: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 NCHW -> float32 in [0, 1] -> normalised by the weights' mean and std."""
    return F.normalize(F.to_dtype(batch, torch.float32, scale=True), list(prep.mean), list(prep.std))


def train_batch(
    images: Sequence[torch.Tensor], prep: Preprocessing, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The training transform of every image (uint8 CHW, any sizes, one device): a normalised NCHW batch."""
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = sample_crop_boxes(heights, widths, (prep.min_crop_scale, 1.0), CROP_RATIO, generator).tolist()
    size = [prep.crop_size, prep.crop_size]
    interpolation = InterpolationMode(prep.interpolation)
    # One resize per image: the crops differ in size. resized_crop is what RandomResizedCrop applies.
    batch = torch.stack(
        [
            F.resized_crop(image, top, left, h, w, size, interpolation=interpolation, antialias=True)
            for image, (top, left, h, w) in zip(images, boxes, strict=True)
        ]
    )
    if prep.hflip:
        flip = torch.rand(len(images), generator=generator) < 0.5  # RandomHorizontalFlip's p=0.5
        batch = torch.where(flip.to(batch.device)[:, None, None, None], batch.flip(-1), batch)
    return normalize_batch(batch, prep)


def eval_batch(images: Sequence[torch.Tensor], prep: Preprocessing) -> torch.Tensor:
    """The weights' evaluation preset (resize, centre crop, normalise) of every image, stacked."""
    preset = prep.eval_transform()
    return torch.stack([preset(image) for image in images])
