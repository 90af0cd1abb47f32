"""Open any image file a photo collection may hold as an RGB PIL image, or say which file is at fault."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError


class BadImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF rotation phone photos store; an EXIF block that cannot be parsed is ignored, because
    a broken tag must not cost a picture that decodes fine."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, OSError, ValueError, TypeError, KeyError, struct.error):
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (grayscale, 16-bit, CMYK, palette, alpha) to 8-bit RGB."""
    img = upright(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit grayscale: a plain convert("RGB") clips everything above 255 to white.
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels often hold arbitrary colours: show them on white, as a viewer would.
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path: str | Path | BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode `path` (a file, whatever its extension says, or an open binary stream) as RGB.

    Truncated files load with their missing part grey, as most viewers show them. `draft_size`
    lets the JPEG decoder skip resolution that a later resize would throw away.
    """
    try:
        with Image.open(path) as img:
            if draft_size:
                img.draft("RGB", (draft_size, draft_size))
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        where = path if isinstance(path, (str, Path)) else "bytes"
        raise BadImageError(f"cannot read image {where}: {exc}") from exc


def check_readable(path: str | Path) -> str | None:
    """Cheap header check used before training; returns the reason a file is unreadable, or None."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            img.size  # noqa: B018 - opening parses the header, which is what we check
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        return str(exc)
    return None
