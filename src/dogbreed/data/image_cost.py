"""What decoding one image will cost, read from its header before any pixel is decoded.

Memory: the pixels the decoder will produce times the bytes one pixel of that mode takes through decoding
and the conversion to RGB (PEAK_BYTES_PER_PIXEL, measured by benchmarks/image_budget.py, figures in
docs/reliability.md), the resize to the model's input, and a fixed allowance; for a JPEG decoded in
several scans (progressive, or one scan per component), also libjpeg's buffer of DCT coefficients, two
bytes per coefficient at the full size, which JPEG draft reduction does not shrink.

CPU time: such a JPEG's decoder passes over the coefficients of a component once per scan, whatever the
scan holds, so a small file of many nearly empty scans announcing a large size takes as long as that many
full decodes. The scans are counted from the SOS markers in the bytes (an embedded thumbnail's count too:
an upper bound).
"""

from __future__ import annotations

import math

from PIL import Image

SOS_MARKER = b"\xff\xda"
COEFFICIENT_BYTES = 2  # libjpeg's JCOEF is a 16-bit integer
BLOCK = 8  # a DCT block is 8x8 samples

# Peak bytes one decoded pixel takes, by Pillow mode, from decoding to the RGB image the resize reads (what
# data.images.to_rgb keeps alive at once). Pillow stores 1/L/P in 1 byte a pixel, I;16 in 2, and every other
# mode in 4.
PEAK_BYTES_PER_PIXEL = {
    "1": 5,
    "L": 5,
    "P": 5,
    "I;16": 8,
    "I;16L": 8,
    "I;16B": 8,
    "I;16N": 8,
    "RGB": 4,
    "RGBX": 8,
    "CMYK": 8,
    "YCbCr": 8,
    "LAB": 8,
    "HSV": 8,
    "RGBA": 8,
    "RGBa": 8,
    "LA": 12,
    "La": 12,
    "PA": 12,
    "I": 9,
    "F": 9,
}
# A palette image with a transparent colour is composited on white through RGBA.
TRANSPARENT_PALETTE_BYTES_PER_PIXEL = 9
# Modes not listed above: as the costliest listed.
UNKNOWN_MODE_BYTES_PER_PIXEL = max(PEAK_BYTES_PER_PIXEL.values())
# libwebp's animation decoder (Pillow's only WebP path) keeps two RGBA canvases, and Pillow copies the
# frame out as bytes before unpacking it.
WEBP_FRAME_BYTES_PER_PIXEL = 12
# What decoding takes whatever the size: codec state, row buffers, the bands of the 16/32-bit conversion,
# the network's input tensor.
WORKING_BYTES = 8 * 2**20
RGB_STORAGE_BYTES = 4  # Pillow stores an RGB pixel in 4 bytes


def bytes_per_pixel(img: Image.Image) -> int:
    """The peak bytes a decoded pixel of `img` takes until it is RGB (its mode and format decide)."""
    if img.mode == "P" and "transparency" in img.info:
        per_pixel = TRANSPARENT_PALETTE_BYTES_PER_PIXEL
    else:
        per_pixel = PEAK_BYTES_PER_PIXEL.get(img.mode, UNKNOWN_MODE_BYTES_PER_PIXEL)
    if img.format == "WEBP":
        per_pixel += WEBP_FRAME_BYTES_PER_PIXEL
    return per_pixel


def resize_bytes(width: int, height: int, resize_size: int) -> int:
    """The resize of the short side to `resize_size` (torchvision's Resize on a PIL image): Pillow
    resamples in two passes, through an image of `resize_size` x the long side, into the output."""
    return 2 * resize_size * max(width, height) * RGB_STORAGE_BYTES


def decode_bytes(img: Image.Image, coefficients: int = 0, resize_size: int | None = None) -> int:
    """Peak memory of decoding `img` (opened, its draft size set) to RGB and resizing it to `resize_size`
    on its short side, when given."""
    width, height = img.size
    total = width * height * bytes_per_pixel(img) + coefficients + WORKING_BYTES
    return total + (resize_bytes(width, height, resize_size) if resize_size else 0)


def jpeg_scans(data: bytes) -> int:
    """SOS markers in the bytes of a JPEG: one per scan (0xFF 0xDA cannot occur inside entropy-coded data,
    where a 0xFF byte is always followed by 0x00 or a restart marker)."""
    return data.count(SOS_MARKER)


def jpeg_coefficient_bytes(img: Image.Image) -> int:
    """The size of libjpeg's whole-image coefficient buffer for a JPEG opened by Pillow (before draft):
    each component's blocks, rounded up to whole MCUs, at two bytes per coefficient."""
    width, height = img.size
    layers = getattr(img, "layer", None) or [(0, 1, 1, 0)] * max(1, getattr(img, "layers", 3))
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    mcus_across = math.ceil(width / (BLOCK * h_max))
    mcus_down = math.ceil(height / (BLOCK * v_max))
    blocks = sum(mcus_across * max(h, 1) * mcus_down * max(v, 1) for _, h, v, _ in layers)
    return blocks * BLOCK * BLOCK * COEFFICIENT_BYTES


def is_multi_scan(img: Image.Image, scans: int | None) -> bool:
    """Whether libjpeg buffers the whole image's coefficients: progressive, or more than one scan."""
    return bool(img.info.get("progressive") or img.info.get("progression")) or (scans or 0) > 1
