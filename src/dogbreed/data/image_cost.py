"""What decoding one image will cost, read from its header before any pixel is decoded.

Memory: the pixels the decoder will produce times the bytes one pixel of that mode takes through decoding
and the conversion to RGB (PEAK_BYTES_PER_PIXEL, measured by benchmarks/image_budget.py, figures in
docs/reliability.md), the resize to the model's input, and a fixed allowance; for a JPEG decoded in
several scans (progressive, or one scan per component), also libjpeg's buffer of DCT coefficients, two
bytes per coefficient at the full size, which JPEG draft reduction does not shrink.

CPU time, in decoded pixels: a JPEG's decoder passes over every block of the components a scan names,
whatever the scan holds, so a small file of many nearly empty scans announcing a large size takes as long
as that many full decodes; those passes count (`decode_work`). The scans are found by their SOS markers in
the bytes (an embedded thumbnail's count too: an upper bound).
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
# Scan headers read for the components each scan names; a file of more scans is refused by its count first.
MAX_PARSED_SCANS = 4096
# Measured (docs/reliability.md): a block pass of a progressive JPEG's decoder against a decoded PNG pixel.
PIXELS_PER_BLOCK_PASS = 0.5


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


def jpeg_blocks(img: Image.Image) -> dict[int, int]:
    """The 8x8 blocks of each component of a JPEG opened by Pillow (its full size, before draft), by
    component id, rounded up to whole MCUs as libjpeg allocates them."""
    width, height = img.size
    layers = getattr(img, "layer", None) or [(i, 1, 1, 0) for i in range(max(1, getattr(img, "layers", 3)))]
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    mcus_across = math.ceil(width / (BLOCK * h_max))
    mcus_down = math.ceil(height / (BLOCK * v_max))
    return {c: mcus_across * max(h, 1) * mcus_down * max(v, 1) for c, h, v, _ in layers}


def jpeg_coefficient_bytes(img: Image.Image) -> int:
    """The size of libjpeg's whole-image coefficient buffer: every block's 64 coefficients, 2 bytes each."""
    return sum(jpeg_blocks(img).values()) * BLOCK * BLOCK * COEFFICIENT_BYTES


def jpeg_block_passes(img: Image.Image, data: bytes) -> int:
    """Blocks the decoder visits over all scans: each scan passes over every block of the components it
    names (a scan header past MAX_PARSED_SCANS, or one that cannot be read, counts as all of them)."""
    blocks = jpeg_blocks(img)
    every = sum(blocks.values())
    passes, start = 0, 0
    for _ in range(MAX_PARSED_SCANS):
        start = data.find(SOS_MARKER, start) + 1
        if not start:
            return passes
        count = data[start + 3] if start + 3 < len(data) else 0  # marker, 2 length bytes, Ns
        ids = data[start + 4 : start + 4 + 2 * count : 2]
        passes += sum(blocks.get(c, every) for c in ids) if len(ids) == count > 0 else every
    return passes + every * max(0, jpeg_scans(data[start:]) - 1)


def decode_work(decoded_pixels: int, block_passes: int) -> int:
    """CPU time of decoding, in decoded pixels: a pass of a JPEG decoder over an 8x8 block costs about as
    much as decoding PIXELS_PER_BLOCK_PASS pixels of a PNG, the resize included."""
    return decoded_pixels + math.ceil(block_passes * PIXELS_PER_BLOCK_PASS)


def is_multi_scan(img: Image.Image, scans: int | None) -> bool:
    """Whether libjpeg buffers the whole image's coefficients: progressive, or more than one scan."""
    return bool(img.info.get("progressive") or img.info.get("progression")) or (scans or 0) > 1
