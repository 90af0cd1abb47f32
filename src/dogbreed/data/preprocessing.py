"""Image preprocessing derived from the pretrained weights' own transforms, scaled to any image size.

The same settings are saved with an exported model, so serving preprocesses exactly as evaluation did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import torch
from torchvision.models import get_model_weights
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms._presets import ImageClassification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandomResizedCrop's aspect-ratio range (torchvision's default), shared by the CPU and the device path.
CROP_RATIO = (3 / 4, 4 / 3)
# The largest resize and crop a model may ask for: a served image is resized to resize_size on its short
# side, so this bounds what preprocessing one image costs after decoding.
MAX_IMAGE_SIDE = 4096
INTERPOLATIONS = tuple(mode.value for mode in InterpolationMode)


class PreprocessingError(ValueError):
    """A preprocessing setting outside what the transforms can use; the message names the field."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _size_problem(name: str, value: object, values: Mapping) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGE_SIDE:
        return f"must be a whole number of pixels from 1 to {MAX_IMAGE_SIDE}"
    crop = values.get("crop_size", Preprocessing.crop_size)
    if name == "resize_size" and isinstance(crop, int) and value < crop:
        return f"is below crop_size={crop}: the centre crop would pad the image with black"
    return None


def _problem(name: str, value: object, values: Mapping) -> str | None:
    """Why `value` cannot be preprocessing field `name`, or None."""
    if name in ("crop_size", "resize_size"):
        return _size_problem(name, value, values)
    if name in ("mean", "std"):
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(map(_is_number, value)):
            return "must be 3 finite numbers, one per RGB channel"
        if name == "std" and min(value) <= 0:
            return "must be 3 positive numbers (the transform divides by them)"
    if name == "interpolation" and value not in INTERPOLATIONS:
        return f"must be one of {', '.join(INTERPOLATIONS)}"
    if name == "min_crop_scale" and not (
        isinstance(value, (int, float)) and _is_number(value) and 0 < value <= 1
    ):
        return "must be a number above 0 and at most 1"
    if name == "hflip" and not isinstance(value, bool):
        return "must be true or false"
    return None


@dataclass(frozen=True)
class Preprocessing:
    crop_size: int = 224
    resize_size: int = 232
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    min_crop_scale: float = 0.08  # RandomResizedCrop's lower area bound for training
    hflip: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    def eval_transform(self) -> ImageClassification:
        """The weights' own evaluation preset (resize, centre crop, normalise) at our sizes."""
        return ImageClassification(
            crop_size=self.crop_size,
            resize_size=self.resize_size,
            mean=self.mean,
            std=self.std,
            interpolation=InterpolationMode(self.interpolation),
        )

    def train_transform(self) -> v2.Compose:
        steps = [
            v2.RandomResizedCrop(
                self.crop_size,
                scale=(self.min_crop_scale, 1.0),
                ratio=CROP_RATIO,
                interpolation=InterpolationMode(self.interpolation),
                antialias=True,
            )
        ]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "extra"}

    @classmethod
    def from_dict(cls, d: Mapping) -> Preprocessing:
        """Preprocessing as a model folder stores it, every field checked (PreprocessingError naming the
        first field at fault): a model file is read by servers, and a size of 100,000 pixels would make
        each request allocate gigabytes."""
        if not isinstance(d, Mapping):
            raise PreprocessingError(f"preprocessing must be a mapping of settings, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            name, settings = unknown[0], ", ".join(sorted(known - {"extra"}))
            raise PreprocessingError(
                f"preprocessing.{name}={d[name]!r} is not a preprocessing setting (they are {settings})"
            )
        for name, value in d.items():
            why = None if name == "extra" else _problem(name, value, d)
            if why:
                raise PreprocessingError(f"preprocessing.{name}={value!r} {why}")
        values = dict(d)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def preprocessing_for(
    arch: str, image_size: int = 224, min_crop_scale: float = 0.08, hflip: bool = True
) -> Preprocessing:
    """Read resize/crop/normalisation from `arch`'s DEFAULT weights and scale them to `image_size`.

    Only the weights' metadata is read: nothing is downloaded, so this works offline and for
    `model.weights=null` too (the network still expects ImageNet-like inputs).
    """
    preset = get_model_weights(arch).DEFAULT.transforms()
    crop, resize = preset.crop_size[0], preset.resize_size[0]
    return Preprocessing(
        crop_size=image_size,
        resize_size=round(image_size * resize / crop),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
        min_crop_scale=min_crop_scale,
        hflip=hflip,
    )
