"""Image preprocessing derived from the pretrained weights' own transforms, scaled to any image size.

The same settings are saved with an exported model, so serving preprocesses exactly as evaluation did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torchvision.models import get_model_weights
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms._presets import ImageClassification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandomResizedCrop's aspect-ratio range (torchvision's default), shared by the CPU and the device path.
CROP_RATIO = (3 / 4, 4 / 3)


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
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


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
