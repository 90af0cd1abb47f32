"""The one image path: open any image a photo collection or a request may hold, check what decoding it will
cost from its header, and decode that same opened image to upright RGB, or say which file is at fault.

Every reader goes through `open_checked`: training's header scan and loader, evaluation, prediction and
both servers. It opens the bytes with one format allow-list (IMAGE_FORMATS), so the header that is checked
is the one the decoder reads: bytes that one format's parser reads as a small image and another's as a huge
one are only ever read as the first, and formats outside the list never reach a decoder. The cost of
decoding (data.image_cost) is held against `ImageLimits` before any pixel is decoded.
"""

from __future__ import annotations

import io
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from dogbreed.config.errors import UserError
from dogbreed.data.image_cost import (
    decode_bytes,
    decode_work,
    is_multi_scan,
    jpeg_block_passes,
    jpeg_coefficient_bytes,
    jpeg_scans,
)

# Formats Pillow may parse: photo formats only (and PPM, whose extensions ImageFolder reads), so no exotic
# decoder sees untrusted bytes. Checking and decoding both open with this list.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow opens a multi-picture JPEG as MPO
# Rows of a 16/32-bit grayscale image converted to 8 bits at once: bounds the float copy that takes.
BAND_PIXELS = 1 << 18

Source = bytes | str | Path | BinaryIO


class BadImageError(UserError, ValueError):
    """An image file that cannot be decoded, or may not be; the message names the file."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message  # the message without the name of the file


class ImageTooLargeError(BadImageError):
    """An image whose decoding would cost more than its limits allow (pixels, memory, scans)."""


@dataclass(frozen=True)
class ImageLimits:
    """What decoding one image may cost, checked from its header; None leaves a bound out (Pillow's own
    decompression-bomb guard still applies)."""

    max_pixels: int | None = None  # pixels the decoder produces (after JPEG draft reduction)
    max_aspect_ratio: float | None = None  # long side over short side
    max_decode_bytes: int | None = None  # peak memory of decoding, see data.image_cost
    max_jpeg_scans: int | None = None  # scans of one JPEG (CPU time)


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an opened image says decoding it will produce and cost."""

    format: str
    mode: str
    width: int  # as announced
    height: int
    decoded_width: int  # as the decoder will produce it (JPEG draft reduction)
    decoded_height: int
    decode_bytes: int  # peak memory of decoding
    decode_work: int  # CPU time of decoding, in decoded pixels (data.image_cost.decode_work)
    scans: int | None = None  # JPEG scans, when the bytes were counted

    @property
    def decoded_pixels(self) -> int:
        return self.decoded_width * self.decoded_height


def _refuse(where: str, reason: str, kind: type[BadImageError] = BadImageError) -> BadImageError:
    return kind(f"{where} {reason}", reason)


def _pillow_bomb(where: str, exc: Exception, limits: ImageLimits) -> BadImageError:
    """Pillow's own guard (twice Image.MAX_IMAGE_PIXELS) fires while parsing the header, before ours."""
    announced = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{announced.group(1)} pixels" if announced else "more pixels than Pillow opens"
    limit = limits.max_pixels or 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return _refuse(where, f"is {size}, over the limit of {limit}", ImageTooLargeError)


def _open(source: Source, where: str, limits: ImageLimits) -> Image.Image:
    """Image.open with the allow-list, its failures said as BadImageError naming `where`."""
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(where, exc, limits) from exc
    except UnidentifiedImageError as exc:
        raise _refuse(where, f"is not an image in a known format ({', '.join(IMAGE_FORMATS)})") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise _refuse(where, f"has an unreadable image header: {exc}") from exc


def _header(img: Image.Image, data: bytes | None, draft_size: int | None, where: str) -> ImageHeader:
    """Read the header of an opened image, after setting the draft size its decoder will use (draft()
    only changes what load() will decode: a JPEG scales by 1/2..1/8; nothing is decoded here). The draft
    size is the size the image is resized to next, so its cost counts the resize too."""
    width, height = img.size
    is_jpeg = img.format in JPEG_FORMATS
    scans = jpeg_scans(data) if is_jpeg and data is not None else None
    coefficients = jpeg_coefficient_bytes(img) if is_jpeg and is_multi_scan(img, scans) else 0
    block_passes = jpeg_block_passes(img, data) if is_jpeg and data is not None else 0
    if draft_size:
        try:
            img.draft("RGB", (draft_size, draft_size))
        except (OSError, ValueError, SyntaxError) as exc:
            raise _refuse(where, f"has an unreadable image header: {exc}") from exc
    decoded_width, decoded_height = img.size
    memory = decode_bytes(img, coefficients, draft_size)
    work = decode_work(decoded_width * decoded_height, block_passes)
    return ImageHeader(
        str(img.format), img.mode, width, height, decoded_width, decoded_height, memory, work, scans
    )


def check_header(header: ImageHeader, limits: ImageLimits, where: str) -> None:
    """Raise BadImageError (ImageTooLargeError for a budget) when decoding this image is not allowed."""
    width, height = header.width, header.height
    if width < 1 or height < 1:
        raise _refuse(where, f"is {width}x{height} pixels: an image needs at least one pixel")
    ratio = max(width, height) / min(width, height)
    if limits.max_aspect_ratio is not None and ratio > limits.max_aspect_ratio:
        raise _refuse(
            where,
            f"is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1, over the limit of "
            f"{limits.max_aspect_ratio:g}:1: resizing its short side to the model's input would blow it up; "
            "crop it first",
        )
    if limits.max_pixels is not None and header.decoded_pixels > limits.max_pixels:
        reason = f"is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}"
        raise _refuse(where, reason, ImageTooLargeError)
    if limits.max_jpeg_scans is not None and (header.scans or 0) > limits.max_jpeg_scans:
        reason = (
            f"is a JPEG of {header.scans} scans, over the limit of {limits.max_jpeg_scans}: "
            "each scan is one more pass of the decoder over the whole image"
        )
        raise _refuse(where, reason, ImageTooLargeError)
    if limits.max_decode_bytes is not None and header.decode_bytes > limits.max_decode_bytes:
        reason = (
            f"is {width}x{height} pixels of mode {header.mode}: decoding it takes {header.decode_bytes} "
            f"bytes, over the limit of {limits.max_decode_bytes}"
        )
        raise _refuse(where, reason, ImageTooLargeError)


def _bytes_to_count(source: Source, limits: ImageLimits) -> bytes | None:
    """The bytes of `source` when a limit needs them (JPEG scans are counted in the bytes)."""
    if isinstance(source, bytes):
        return source
    if limits.max_jpeg_scans is None and limits.max_decode_bytes is None:
        return None
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    return source.read()


def _where(source: Source, where: str | None) -> str:
    if where:
        return where
    return str(source) if isinstance(source, (str, Path)) else "image bytes"


@contextmanager
def open_checked(
    source: Source,
    draft_size: int | None = None,
    limits: ImageLimits | None = None,
    where: str | None = None,
) -> Iterator[tuple[Image.Image, ImageHeader]]:
    """Open `source` (encoded bytes, a file whatever its extension says, or a binary stream) with the
    allow-list, set the JPEG draft size, and check its header against `limits`: the opened image, not
    yet decoded, and what its header says. `draft_size` lets the JPEG decoder skip resolution that a later
    resize would throw away."""
    limits = limits or ImageLimits()
    where = _where(source, where)
    data = _bytes_to_count(source, limits)
    with _open(data if data is not None else source, where, limits) as img:
        header = _header(img, data, draft_size, where)
        check_header(header, limits, where)
        yield img, header


def read_header(
    source: Source,
    draft_size: int | None = None,
    limits: ImageLimits | None = None,
    where: str | None = None,
) -> ImageHeader:
    """Check an image from its header alone, as `load_rgb` will before decoding it."""
    with open_checked(source, draft_size, limits, where) as (_, header):
        return header


def load_rgb(
    source: Source,
    draft_size: int | None = None,
    limits: ImageLimits | None = None,
    where: str | None = None,
    expected: ImageHeader | None = None,
) -> Image.Image:
    """Decode `source` as upright RGB after checking its header (`open_checked`).

    Truncated files load with their missing part grey, as most viewers show them. `expected`: the header
    an earlier check read; decoding refuses an image whose header now says otherwise."""
    where = _where(source, where)
    with open_checked(source, draft_size, limits, where) as (img, header):
        if expected is not None and header != expected:
            raise _refuse(where, "does not decode as its header check read it")
        try:
            with _truncated_images_allowed():
                img.load()
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
            raise _refuse(where, f"cannot be decoded: {exc}") from exc
        if img.size != (header.decoded_width, header.decoded_height):
            width, height = img.size
            raise _refuse(where, f"decoded to {width}x{height}, not to the size its header announced")
        try:
            return to_rgb(img)
        except (OSError, ValueError) as exc:
            raise _refuse(where, f"cannot be converted to RGB: {exc}") from exc


def check_readable(path: str | Path) -> str | None:
    """The header check run on every file before training; returns the reason a file is unreadable, or
    None. It opens the file as the loader will (`open_checked`)."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        read_header(path)
    except BadImageError as exc:
        return exc.reason
    except OSError as exc:
        return str(exc)
    return None


_truncated_lock = threading.Lock()
_truncated_users = 0
_truncated_previous = False


@contextmanager
def _truncated_images_allowed() -> Iterator[None]:
    """Pillow's LOAD_TRUNCATED_IMAGES is one global: set it while any decode in this process runs, and put
    it back when the last one ends, so that concurrent decodes never switch it off under each other."""
    global _truncated_users, _truncated_previous
    with _truncated_lock:
        if _truncated_users == 0:
            _truncated_previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
        _truncated_users += 1
    try:
        yield
    finally:
        with _truncated_lock:
            _truncated_users -= 1
            if _truncated_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _truncated_previous


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF rotation phone photos store; an EXIF block that cannot be parsed is ignored, because
    a broken tag must not cost a picture that decodes fine. An image already upright is returned as it is
    (exif_transpose would copy it)."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) not in range(2, 9):
            return img
        return ImageOps.exif_transpose(img)
    except (SyntaxError, OSError, ValueError, TypeError, KeyError, struct.error):
        return img


def _to_8_bit_gray(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to mode L, scaled to its range (a plain convert clips everything above
    255 to white), a band of rows at a time so that no full-size float copy is made."""
    top = 65535.0 if img.mode.startswith("I;16") else max(float(img.getextrema()[1]), 1.0)  # type: ignore[arg-type]
    width, height = img.size
    out = np.empty((height, width), np.uint8)
    rows = max(1, BAND_PIXELS // max(width, 1))
    for y in range(0, height, rows):
        band = np.asarray(img.crop((0, y, width, min(height, y + rows))), dtype=np.float32)
        out[y : y + rows] = np.clip(band / top * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (grayscale, 16-bit, CMYK, palette, alpha) to 8-bit RGB."""
    img = upright(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8_bit_gray(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        # Transparent pixels often hold arbitrary colours: show them on white, as a viewer would.
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img)
        return background
    return img.convert("RGB") if img.mode != "RGB" else img
