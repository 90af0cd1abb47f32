"""What decoding one image will cost, read from its header before any pixel is decoded.

Memory is the pixels the decoder will produce times the bytes one pixel of that mode takes through decoding
and the conversion to RGB (PEAK_BYTES_PER_PIXEL, measured by benchmarks/image_budget.py; figures in
docs/reliability.md), plus, for a JPEG decoded in several scans (progressive, or one scan per component),
libjpeg's buffer of DCT coefficients: two bytes per coefficient at the full size, which JPEG draft reduction
does not shrink. CPU time of such a JPEG grows with its scan count: the decoder passes over the coefficients
of a component once per scan, whatever the scan holds, so a small file of many nearly empty scans
announcing a large size takes seconds per scan-megapixel. The scans are counted from the SOS markers in the
bytes (an embedded thumbnail's scans count too: an upper bound).
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
    "I;16": 7,
    "I;16L": 7,
    "I;16B": 7,
    "I;16N": 7,
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
# libwebp decodes into a frame buffer of its own, RGBA, which Pillow then copies.
WEBP_FRAME_BYTES_PER_PIXEL = 4


def bytes_per_pixel(img: Image.Image) -> int:
    """The peak bytes a decoded pixel of `img` takes until it is RGB (its mode and format decide)."""
    if img.mode == "P" and "transparency" in img.info:
        per_pixel = TRANSPARENT_PALETTE_BYTES_PER_PIXEL
    else:
        per_pixel = PEAK_BYTES_PER_PIXEL.get(img.mode, UNKNOWN_MODE_BYTES_PER_PIXEL)
    if img.format == "WEBP":
        per_pixel += WEBP_FRAME_BYTES_PER_PIXEL
    return per_pixel


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
