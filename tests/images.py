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
