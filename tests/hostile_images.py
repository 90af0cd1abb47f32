"""Image files crafted to cost a decoder far more than their size, written byte by byte (no photos):
used by benchmarks/image_budget.py and by the tests that show each is refused before it is decoded.

- `tiff_im_polyglot`: bytes that are a 16 x 16 TIFF and also a Pillow IM header announcing 1 x 100,000.
  TIFF's parser reads the IFD the TIFF header points to; IM's reads text lines ("key: value") up to a
  0x1A byte and ignores the binary TIFF header line, whose key it does not know. Opened with TIFF allowed,
  it is a TIFF; opened without a format list, Pillow tries IM first and fills 100,000 rows it never had.
- `many_scan_jpeg`: a progressive JPEG announcing a large size whose scans are all empty AC scans (each an
  end-of-band run over every block): a few hundred bytes a scan, yet the decoder visits every block of a
  component in each scan and keeps full-size coefficients for all of them.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

SHORT, LONG = 3, 4


def _ifd_entry(tag: int, kind: int, value: int) -> bytes:
    if kind == SHORT:
        return struct.pack("<HHIHH", tag, kind, 1, value, 0)
    return struct.pack("<HHII", tag, kind, 1, value)


def tiff_im_polyglot(im_height: int = 100_000, side: int = 16) -> bytes:
    """A valid `side` x `side` 8-bit grayscale TIFF that Pillow's IM parser reads as 1 x `im_height`."""
    ifd_offset = 128
    im_header = (
        b": dogbreed polyglot\n"  # ends the IM line that begins with the TIFF header "II*\0<offset>"
        + f"Image size (x*y): 1*{im_height}\n".encode()
        + b"\x1a"  # the end of IM's text header
    )
    head = (b"II*\x00" + struct.pack("<I", ifd_offset) + im_header).ljust(ifd_offset, b"\x00")
    entries = [
        (256, SHORT, side),  # ImageWidth
        (257, SHORT, side),  # ImageLength
        (258, SHORT, 8),  # BitsPerSample
        (259, SHORT, 1),  # Compression: none
        (262, SHORT, 1),  # PhotometricInterpretation: black is zero
        (273, LONG, 0),  # StripOffsets, set below
        (277, SHORT, 1),  # SamplesPerPixel
        (278, SHORT, side),  # RowsPerStrip
        (279, LONG, side * side),  # StripByteCounts
    ]
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    entries[5] = (273, LONG, data_offset)
    ifd = struct.pack("<H", len(entries)) + b"".join(_ifd_entry(*e) for e in entries) + struct.pack("<I", 0)
    pixels = bytes((x * 16 + y) % 256 for y in range(side) for x in range(side))
    return head + ifd + pixels


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _entropy_bytes(bits: str) -> bytes:
    """Bits packed into bytes, padded with ones, each 0xFF byte stuffed with 0x00 as JPEG requires."""
    bits += "1" * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        out.append(int(bits[i : i + 8], 2))
        if out[-1] == 0xFF:
            out.append(0)
    return bytes(out)


def many_scan_jpeg(
    width: int = 13_000, height: int = 13_000, scans: int = 1_000, components: int = 3
) -> bytes:
    """A progressive JPEG of `scans` empty AC scans (no DC scan), taking the components in turn."""
    ids = list(range(1, components + 1))
    frame = struct.pack(">BHHB", 8, height, width, components) + b"".join(bytes((c, 0x11, 0)) for c in ids)
    quantisation = b"\x00" + bytes([1] * 64)
    one_code = bytes([1] + [0] * 15)  # one Huffman code of length 1
    huffman = b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\xe0"  # DC: symbol 0; AC: EOB run 2^14
    blocks = -(-width // 8) * -(-height // 8)
    max_run = 2**15 - 1  # symbol 0xE0 and 14 extra bits
    scan_data = _entropy_bytes(("0" + "1" * 14) * -(-blocks // max_run))
    body = b"".join(
        _segment(0xDA, bytes((1, ids[i % components], 0x00, 1, 63, 0))) + scan_data for i in range(scans)
    )
    return (
        b"\xff\xd8"
        + _segment(0xDB, quantisation)
        + _segment(0xC2, frame)
        + _segment(0xC4, huffman)
        + body
        + b"\xff\xd9"
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A real, valid 1-bit PNG of side x side black pixels (900 MP at 30000) in about 110 KB.

    Decoded it would take 900 MB as 8-bit grayscale (2.7 GB as RGB); a server that checks the header's
    size first refuses it without decoding anything."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one bit per pixel
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def black_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels, a few bytes per thousand pixels: thin ones
    (1 x 30,000) expand enormously when resized to a model's input, large ones test pixel budgets."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    rows_per_chunk = max(1, 2**20 // len(row))
    chunk = row * rows_per_chunk
    parts = [compressor.compress(chunk) for _ in range(height // rows_per_chunk)]
    parts += [compressor.compress(row * (height % rows_per_chunk)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_corrupt_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    """A good JPEG whose EXIF block is not TIFF: Pillow reads it once, fails on a second parse."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buf, "JPEG", exif=b"Exif\x00\x00XX\x00\x2a" + bytes(20))
    return buf.getvalue()


def deep_json(depth: int = 100_000) -> bytes:
    return b'{"images": ' + b"[" * depth + b"]" * depth + b"}"


def huge_int_json(digits: int = 5_000) -> bytes:
    return b'{"image": ' + b"7" * digits + b"}"


def huge_key_json(key_bytes: int = 5 * 2**20) -> bytes:
    return b'{"' + b"k" * key_bytes + b'": 1}'


def pixel_budget_json(images: int = 32, side: int = 6_300) -> bytes:
    """`images` PNGs, each within the per-image pixel limit (side x side), together far over a request's."""
    encoded = base64.b64encode(black_png(side, side)).decode()
    return json.dumps({"images": [encoded] * images}).encode()


def ordinary_jpeg(side: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (40, 160, 90)).save(buf, "JPEG")
    return buf.getvalue()


def rgba_png_request(images: int = 32, size: tuple[int, int] = (2000, 1250)) -> bytes:
    """A JSON request of `images` half-transparent RGBA PNGs: slow to decode per pixel (the alpha is
    composited on white), yet small to send."""
    w, h = size
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., 0] = (np.arange(w) % 256)[None, :]
    arr[..., 1] = (np.arange(h) % 256)[:, None]
    arr[..., 3] = 128
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, "PNG")
    one = base64.b64encode(buf.getvalue()).decode()
    return json.dumps({"images": [one] * images}).encode()
