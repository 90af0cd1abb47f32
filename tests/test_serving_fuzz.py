"""Fuzzed request bodies: whatever the bytes, the answer is a ServingError (a 4xx) or an image within the
limits, and the peak memory (from /proc) of answering each body stays bounded."""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dogbreed.data.preprocessing import preprocessing_for
from dogbreed.serving.decoding import RequestLimits, decode_image, read_request
from dogbreed.serving.errors import ServingError
from dogbreed.serving.faults import RateLimitedFaultLog

LIMITS = RequestLimits(max_pixels=1_000_000, max_request_pixels=2_000_000, max_aspect_ratio=20.0)
PREPROCESSING = preprocessing_for("resnet18", 64)
TRANSFORM = PREPROCESSING.eval_transform()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# What answering one fuzzed body may add to the peak memory: the limits above allow one 1 MP image.
PER_BODY_MEMORY_BOUND_MB = 64


def answer(body: bytes | str, content_type: str) -> list:
    """What the server does with a body up to the network's input, or the ServingError it answers; the
    peak memory it took is measured from /proc (hypothesis's own memory is left out)."""
    before = _vm_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak, to the current RSS
    try:
        images = read_request(body, content_type, LIMITS, PREPROCESSING.resize_size)
        tensors = [TRANSFORM(decode_image(image)) for image in images]
    except ServingError:
        return []
    finally:
        growth_mb = (_vm_kb("VmHWM") - before) / 1024
        assert growth_mb < PER_BODY_MEMORY_BOUND_MB, f"one body raised peak memory by {growth_mb:.0f} MB"
    for image in images:
        assert image.decoded_pixels <= LIMITS.max_pixels
        assert max(image.width, image.height) <= LIMITS.max_aspect_ratio * min(image.width, image.height)
    for tensor in tensors:
        assert tensor.shape == (3, PREPROCESSING.crop_size, PREPROCESSING.crop_size)
    return tensors


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, bit_depth: int, colour: int) -> bytes:
    """A PNG that announces width x height and holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (48, 36), 120).save(buf, fmt)
    return buf.getvalue()


SEEDS = [
    _encoded("JPEG"),
    _encoded("PNG"),
    _encoded("PNG", "RGBA"),
    _encoded("WEBP"),
    _encoded("GIF", "L"),
    _encoded("BMP"),
    _encoded("TIFF"),
]


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    cut=st.none() | st.integers(0, 4_000),
)
def test_damaged_images_are_answered_with_a_4xx_or_decoded_within_limits(seed, edits, cut):
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    answer(bytes(data[:cut] if cut is not None else data), "image/jpeg")


@FUZZ
@given(
    width=st.integers(0, 2**31 - 1),
    height=st.integers(0, 2**31 - 1),
    mode=st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 6), (8, 3)]),
)
def test_announced_sizes_never_reach_the_decoder_past_the_limits(width, height, mode):
    answer(png_header(width, height, *mode), "image/png")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["image", "images", "url", "x"]), JSON_VALUES, max_size=3))
def test_any_json_document_is_answered_with_a_4xx(doc):
    assert answer(json.dumps(doc), "application/json") == []


@FUZZ
@given(body=st.binary(max_size=2_000), content_type=st.sampled_from(["application/json", "image/png", "x/y"]))
def test_arbitrary_bytes_are_answered_with_a_4xx(body, content_type):
    answer(body, content_type)


def test_server_faults_are_logged_with_one_traceback_and_rate_limited(caplog):
    now = [0.0]
    faults = RateLimitedFaultLog(
        logging.getLogger("dogbreed.test_faults"), per_minute=3, clock=lambda: now[0]
    )
    with caplog.at_level(logging.ERROR, logger="dogbreed.test_faults"):
        for _ in range(10):
            try:
                raise RuntimeError("bug")
            except RuntimeError:
                faults.fault("fault while answering %s", "POST /invocations")
        now[0] = 61.0
        try:
            raise RuntimeError("bug")
        except RuntimeError:
            faults.fault("fault while answering %s", "POST /invocations")
    records = caplog.records
    assert len(records) == 4
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in records)
    assert "7 faults left out" in records[-1].getMessage()
    assert caplog.text.count("Traceback") == 4
