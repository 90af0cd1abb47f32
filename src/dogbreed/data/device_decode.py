"""The GPU input path (`data.decode=gpu`): loader workers read file bytes, batches are decoded on the device.

A worker hands a JPEG over as its bytes when nvJPEG can decode it as the CPU path would (a three-channel
JPEG without an EXIF rotation); any other file (PNG, grayscale, CMYK, a rotated phone photo) is decoded in
the worker by `load_rgb`, the CPU path's own decoder, so a batch can mix encoded and decoded images. After
Lightning has moved a batch to the training device, the data module's `on_after_batch_transfer` calls
`decode_and_transform`: the JPEGs are decoded in one call of `torchvision.io.decode_jpeg` (nvJPEG on a
CUDA device), then cropped, flipped and normalised there (device_transforms).

Bad images behave as on the CPU path: a JPEG that nvJPEG refuses is decoded again by `load_rgb`, which
loads truncated files (their missing part grey) and names the file it cannot read; with
`data.on_bad_image=skip` that image leaves its batch with a warning, otherwise the BadImageError stops
the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from dogbreed.data.device_transforms import eval_batch, train_batch
from dogbreed.data.images import BadImageError, load_rgb, open_checked
from dogbreed.data.preprocessing import Preprocessing

JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedImages:
    """A batch of images as the workers left them: 1-D JPEG bytes, or 3-D uint8 CHW decoded by `load_rgb`.

    Lightning moves a batch to the device by calling `.to(device)` on what it holds: the images stay in
    host memory (nvJPEG reads its input there) and the batch remembers the device to decode on.
    """

    images: list[torch.Tensor]
    paths: list[str]
    augment: bool
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device | str, *args: object, **kwargs: object) -> EncodedImages:
        return replace(self, device=torch.device(device))

    def pin_memory(self) -> EncodedImages:
        return replace(self, images=[image.pin_memory() for image in self.images])


def nvjpeg_decodes(data: bytes) -> bool:
    """Whether these bytes are a JPEG that nvJPEG decodes to what `load_rgb` would make of it."""
    if not data.startswith(JPEG_MAGIC):
        return False
    try:
        # The one opening path (format allow-list, header check): nothing else parses these bytes.
        with open_checked(data) as (img, header):
            upright = img.getexif().get(EXIF_ORIENTATION, 1) == 1
            return header.format == "JPEG" and header.mode == "RGB" and upright
    except Exception:  # any doubt: load_rgb decides, and names the file if it cannot read it
        return False


def read_for_device(path: str, draft_size: int | None = None) -> tuple[torch.Tensor, str]:
    """A worker's part: the file's bytes when nvJPEG can decode them, else `load_rgb`'s image (uint8 CHW)."""
    data = Path(path).read_bytes()
    if nvjpeg_decodes(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), path
    return pil_to_tensor(load_rgb(path, draft_size=draft_size)), path


def collate_encoded(
    samples: Sequence[tuple[tuple[torch.Tensor, str], int]], augment: bool
) -> tuple[EncodedImages, torch.Tensor]:
    """The loader's batch of `read_for_device` samples: the images as they are, and the targets."""
    images = [image for (image, _), _ in samples]
    paths = [path for (_, path), _ in samples]
    targets = torch.tensor([target for _, target in samples], dtype=torch.long)
    return EncodedImages(images, paths, augment), targets


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes (CPU tensors) decoded to RGB uint8 CHW on `device`: nvJPEG, batched, on a CUDA device."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its decoders for TorchCodec's, which this project does not depend on
        # yet, and warns at every call. A move to TorchCodec changes this function only.
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_one(data: torch.Tensor, path: str, device: torch.device, draft_size: int | None) -> torch.Tensor:
    """One image of a batch nvJPEG refused: by itself, else by `load_rgb` (BadImageError names the file)."""
    try:
        return decode_jpegs([data], device)[0]
    except RuntimeError:
        return pil_to_tensor(load_rgb(path, draft_size=draft_size)).to(device)


def decode_batch(
    batch: EncodedImages, skip_bad: bool, draft_size: int | None = None
) -> tuple[list[torch.Tensor], list[int]]:
    """Every image of `batch` decoded on its device, and the indices of those kept (all, unless skipped).

    `draft_size`: as for the CPU path's `load_rgb`, which decodes the files nvJPEG refuses.
    """
    decoded = {
        k: image.to(batch.device, non_blocking=True)
        for k, image in enumerate(batch.images)
        if image.dim() == 3
    }
    jpegs = [k for k, image in enumerate(batch.images) if image.dim() == 1]
    if jpegs:
        try:
            decoded.update(
                zip(jpegs, decode_jpegs([batch.images[k] for k in jpegs], batch.device), strict=True)
            )
        except RuntimeError:  # one bad file fails the whole call: decode them one at a time
            for k in jpegs:
                try:
                    decoded[k] = decode_one(batch.images[k], batch.paths[k], batch.device, draft_size)
                except BadImageError as exc:
                    if not skip_bad:
                        raise
                    warnings.warn(f"skipping {exc}", stacklevel=2)
    kept = sorted(decoded)
    if not kept:
        raise BadImageError(f"no readable image in a batch of {', '.join(batch.paths)}")
    return [decoded[k] for k in kept], kept


def decode_and_transform(
    batch: EncodedImages, targets: torch.Tensor, prep: Preprocessing, skip_bad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A worker batch made into what the CPU path's loader yields: normalised NCHW float32 and targets."""
    images, kept = decode_batch(batch, skip_bad, draft_size=prep.resize_size)
    if len(kept) < len(targets):
        targets = targets[torch.tensor(kept, device=targets.device)]
    pixels = train_batch(images, prep) if batch.augment else eval_batch(images, prep)
    return pixels, targets
