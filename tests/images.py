"""Makers of awkward image files for the tests (the project's own test data: no real photos)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(size: tuple[int, int] = (48, 32), mode: str = "RGB") -> Image.Image:
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    img = Image.fromarray(arr)
    return img if mode == "RGB" else img.convert(mode)


def jpeg_bytes(img: Image.Image | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    (img or gradient()).save(buf, "JPEG", **kw)
    return buf.getvalue()


def write_awkward_images(folder: Path) -> dict[str, Path]:
    """Files that must all load as RGB: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    put("plain.jpg", jpeg_bytes())
    put("truncated.jpg", jpeg_bytes(gradient((200, 150)))[:-400])
    put("grayscale.jpg", jpeg_bytes(gradient(mode="L")))
    put("cmyk.jpg", jpeg_bytes(gradient(mode="CMYK")))
    buf = io.BytesIO()
    gradient(mode="RGBA").save(buf, "PNG")
    put("png_named.jpg", buf.getvalue())
    rgba = gradient().convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white, not the hidden colours
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    put("transparent.png", buf.getvalue())
    buf = io.BytesIO()
    gradient().convert("P").save(buf, "PNG", transparency=0)
    put("palette.png", buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 40).save(buf, "PNG")
    put("sixteen_bit.png", buf.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    put("exif_rotated.jpg", jpeg_bytes(gradient((48, 32)), exif=exif))
    return files


# (width, height, format): landscape, portrait, square, tiny and large, as a folder of photos comes.
PHOTO_SHAPES = [
    (500, 375, "JPEG"),
    (375, 500, "JPEG"),
    (1024, 768, "JPEG"),
    (64, 48, "PNG"),
    (300, 300, "PNG"),
    (1600, 1200, "JPEG"),
    (640, 427, "PNG"),
    (120, 90, "JPEG"),
    (800, 533, "JPEG"),
    (256, 384, "PNG"),
]


def photo_like(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth colour gradients with fine texture and noise, different for each seed: what a photo's
    pixels look like to a decoder and a resize (the draft-mode decoding of a JPEG changes them)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = np.stack(
        [
            127 + 127 * np.sin(x / w * np.pi * (1 + seed % 3) + phase[0]),
            127 + 127 * np.cos(y / h * np.pi * (1 + seed % 4) + phase[1]),
            (x * (seed + 1) + y) % 256,
        ],
        axis=-1,
    )
    texture = 40 * np.sin(x / (1.5 + seed % 5))[..., None] * np.cos(y / 1.7)[..., None]
    pixels = np.clip(base + texture + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_photo_files(folder: Path) -> list[Path]:
    """Ten genuine JPEG and PNG files of different sizes and shapes (PHOTO_SHAPES), named photo-NN.jpg/png."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (w, h, fmt) in enumerate(PHOTO_SHAPES):
        path = folder / f"photo-{i:02d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        photo_like((w, h), seed=i).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        files.append(path)
    return files
