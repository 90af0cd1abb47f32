"""One image path: the header check and the decoder open the bytes with the same format allow-list and
agree on what will be decoded; a budget read from the header (pixels, memory by mode, JPEG coefficients
and scans) is held before decoding starts; training reads images the same way."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from dogbreed.data.folders import BreedImageFolder
from dogbreed.data.image_cost import PEAK_BYTES_PER_PIXEL
from dogbreed.data.images import IMAGE_FORMATS, ImageLimits, check_readable, load_rgb, read_header
from dogbreed.serving.decoding import RequestLimits, decode_image, read_request
from dogbreed.serving.errors import BadRequestError, PayloadTooLargeError
from tests.hostile_images import many_scan_jpeg, tiff_im_polyglot
from tests.images import gradient
from tests.serving_support import encode

# The tests open IM files on purpose, to show that the image path never does: Pillow warns that it reads IM.
pytestmark = pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")


def saved(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def test_the_polyglot_is_read_as_the_tiff_it_was_checked_as_never_as_the_im_image():
    polyglot = tiff_im_polyglot(im_height=100_000)
    assert len(polyglot) < 1000
    # The test means something: opened without a format list, Pillow reads an IM image of 1 x 100,000.
    with Image.open(io.BytesIO(polyglot)) as anything_goes:
        assert (anything_goes.format, anything_goes.size) == ("IM", (1, 100_000))

    (image,) = read_request(polyglot, "image/tiff", RequestLimits(), draft_size=232)
    assert image.header is not None and (image.header.format, image.width, image.height) == ("TIFF", 16, 16)
    decoded = decode_image(image)
    assert decoded.size == (16, 16)
    assert np.asarray(decoded)[3, 5, 0] == (5 * 16 + 3) % 256  # the TIFF's own pixels
    assert load_rgb(polyglot).size == (16, 16)


def test_formats_outside_the_allow_list_never_reach_a_decoder(tmp_path):
    im_only = bytearray(tiff_im_polyglot())
    im_only[1] = ord("X")  # no longer a TIFF header; still an IM one
    with Image.open(io.BytesIO(bytes(im_only))) as anything_goes:
        assert anything_goes.format == "IM"
    for fmt, data in [
        ("IM", bytes(im_only)),
        ("TGA", encode(gradient(), "TGA")),
        ("PCX", encode(gradient(), "PCX")),
    ]:
        with pytest.raises(BadRequestError, match="request body is not an image in a known format"):
            read_request(data, "application/octet-stream")
        disguised = tmp_path / f"{fmt}.jpg"
        disguised.write_bytes(data)
        assert "not an image in a known format" in (check_readable(disguised) or "")
    assert "PPM" in IMAGE_FORMATS  # ImageFolder reads .ppm/.pgm: training and serving read them alike
    assert load_rgb(encode(gradient(), "PPM")).size == (48, 32)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("JPEG", "CMYK"),
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("PNG", "I;16"),
        ("TIFF", "F"),
        ("TIFF", "I"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
    ],
)
@pytest.mark.parametrize("draft", [None, 40])
def test_the_header_check_says_the_size_the_decoder_produces(fmt, mode, draft):
    img = gradient((400, 300)).convert(mode) if mode not in ("I;16", "F", "I") else _wide_gray(mode)
    data = encode(img, fmt)
    header = read_header(data, draft)
    decoded = load_rgb(data, draft)
    assert decoded.mode == "RGB"
    # The resize after decoding reads this image: it is what the check announced.
    assert decoded.size == (header.decoded_width, header.decoded_height)
    if fmt == "JPEG" and draft:
        assert header.decoded_width < 400  # the draft reduction the check counted really happens


def _wide_gray(mode: str) -> Image.Image:
    values = np.linspace(0, 60_000, 400 * 300).reshape(300, 400)
    dtype = {"I;16": np.uint16, "F": np.float32, "I": np.int32}[mode]
    return Image.fromarray(values.astype(dtype), None if mode == "I;16" else mode)


def test_32_bit_images_are_charged_their_real_bytes_per_pixel():
    """A 32-bit float image costs more per pixel than RGB: the budget counts its mode, and refuses it
    where an RGB image of the same size passes."""
    assert PEAK_BYTES_PER_PIXEL["F"] > PEAK_BYTES_PER_PIXEL["RGB"]
    size = (2000, 1000)
    float_tiff = saved(_wide_gray("F").resize(size), "TIFF", compression="tiff_deflate")
    rgb_png = encode(gradient(size), "PNG")
    rgb_cost = read_header(rgb_png, 232).decode_bytes
    float_cost = read_header(float_tiff, 232).decode_bytes
    assert float_cost > rgb_cost + size[0] * size[1] * 4
    limits = RequestLimits(max_decode_bytes=(rgb_cost + float_cost) // 2)
    read_request(rgb_png, "image/png", limits, 232)
    with pytest.raises(
        PayloadTooLargeError, match=r"2000x1000 pixels of mode F: decoding it takes \d+ bytes"
    ):
        read_request(float_tiff, "image/tiff", limits, 232)
    # Decoding holds the image against the same budget again: it never trusts an earlier check alone.
    (checked,) = read_request(float_tiff, "image/tiff", RequestLimits(), 232)
    tighter = type(checked)(**{**checked.__dict__, "limits": limits.per_image})
    with pytest.raises(PayloadTooLargeError, match="decoding it takes"):
        decode_image(tighter)


def test_a_progressive_jpeg_is_charged_its_full_size_coefficients_whatever_the_draft():
    flat = Image.new("RGB", (3000, 2000), (90, 140, 200))
    baseline, progressive = saved(flat, "JPEG"), saved(flat, "JPEG", progressive=True)
    baseline_cost = read_header(baseline, 232).decode_bytes
    progressive_cost = read_header(progressive, 232).decode_bytes
    # 4:2:0 sampling: 1.5 samples a pixel, 2 bytes a coefficient, at 3000 x 2000 whatever the draft.
    assert progressive_cost - baseline_cost >= 3000 * 2000 * 3
    limits = RequestLimits(max_decode_bytes=(baseline_cost + progressive_cost) // 2)
    (image,) = read_request(baseline, "image/jpeg", limits, 232)
    assert decode_image(image).size == (375, 250)
    with pytest.raises(PayloadTooLargeError, match="3000x2000 pixels of mode RGB"):
        read_request(progressive, "image/jpeg", limits, 232)


def test_a_jpeg_of_a_thousand_scans_is_refused_from_its_header_at_once():
    bomb = many_scan_jpeg(13_000, 13_000, scans=1_000)
    assert len(bomb) < 300_000
    with pytest.raises(PayloadTooLargeError, match="JPEG of 1000 scans, over the limit of 64") as info:
        read_request(bomb, "image/jpeg", RequestLimits(), draft_size=232)
    assert info.value.status == 413
    # Within the pixel limit after draft reduction: only the scan count and the coefficients refuse it.
    header = read_header(bomb, 232, ImageLimits())
    assert header.scans == 1_000 and header.decoded_pixels <= RequestLimits().max_pixels


def test_the_request_budget_counts_the_decoders_passes_over_a_progressive_jpeg():
    """Within every per-image limit, a large progressive JPEG of empty scans still costs the decoder a pass
    over every block per scan: the request's CPU budget counts those passes, so a request cannot hold many
    of them, while the same number of baseline JPEGs of that size passes (their draft decode is cheap)."""
    scanned = many_scan_jpeg(13_000, 13_000, scans=40, components=1)
    (one,) = read_request(scanned, "image/jpeg", RequestLimits(), 232)
    assert one.header is not None and one.header.decode_work > 40 * one.header.decoded_pixels // 2
    body = json.dumps({"images": [base64.b64encode(scanned).decode()] * 2})
    with pytest.raises(PayloadTooLargeError, match=r"images\[1\] cost as much to decode as \d+ pixels"):
        read_request(body, "application/json", RequestLimits(), 232)
    baseline = many_scan_jpeg(13_000, 13_000, scans=1, components=1)
    baseline = baseline.replace(b"\xff\xc2", b"\xff\xc0", 1)  # the same frame, sequential (SOF0)
    body = json.dumps({"images": [base64.b64encode(baseline).decode()] * 2})
    assert len(read_request(body, "application/json", RequestLimits(), 232)) == 2


def test_an_ordinary_progressive_jpeg_is_within_the_scan_limit():
    data = saved(gradient((640, 480)), "JPEG", progressive=True)
    (image,) = read_request(data, "image/jpeg", RequestLimits(), 232)
    assert image.header is not None and 2 <= (image.header.scans or 0) <= RequestLimits().max_jpeg_scans
    assert decode_image(image).size == (320, 240)


@pytest.mark.parametrize(
    "encoder",
    [
        base64.encodebytes,  # a line break every 76 characters
        lambda b: base64.b64encode(b).rstrip(b"="),
        base64.urlsafe_b64encode,
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
        lambda b: base64.encodebytes(b).replace(b"\n", b"\r\n"),  # MIME
    ],
    ids=["encodebytes", "unpadded", "urlsafe", "urlsafe_unpadded", "mime_crlf"],
)
def test_common_base64_variants_are_accepted(encoder):
    # Trailing bytes whose standard encoding holds + and / (so that the URL-safe one differs), and a length
    # that needs padding (so that leaving it out differs).
    png = encode(gradient((61, 47)), "PNG") + b"\xfb\xff\xfe"
    png += b"\x00" * ((1 - len(png)) % 3)
    encoded = encoder(png).decode()
    assert encoded != base64.b64encode(png).decode()
    (image,) = read_request(json.dumps({"images": [encoded]}), "application/json")
    assert image.data == png


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("iVBO Rw0K", "outside the base64 alphabet"),
        ("iVBO\tRw0K", "outside the base64 alphabet"),
        ("iVBO+w0_", "mixes the standard"),
        ("iVBORw0=K", "outside the base64 alphabet"),
        ("iVBORw0KG", "not a whole number of base64 groups"),
        ("iVBORw0K=", "not a whole number of base64 groups"),
    ],
)
def test_other_base64_is_refused_naming_the_field(value, words):
    with pytest.raises(BadRequestError, match=rf"JSON field images\[0\] is not valid base64: .*{words}"):
        read_request(json.dumps({"images": [value]}), "application/json")


def test_training_reads_images_through_the_same_path(tmp_path):
    """The header scan and the loader of BreedImageFolder open files as a server opens request bodies."""
    folder = tmp_path / "train" / "001.a"
    folder.mkdir(parents=True)
    (folder / "photo.jpg").write_bytes(encode(gradient(), "JPEG"))
    (folder / "scan.tif").write_bytes(tiff_im_polyglot())
    im_only = bytearray(tiff_im_polyglot())
    im_only[1] = ord("X")
    (folder / "disguised.jpg").write_bytes(bytes(im_only))
    dataset = BreedImageFolder(tmp_path / "train", ["001.a"], skip_bad=True)
    assert [p.split("/")[-1] for p, _ in dataset.skipped] == ["disguised.jpg"]
    assert "not an image in a known format" in dataset.skipped[0][1]
    sizes = sorted(dataset[i][0].size for i in range(len(dataset)))
    assert sizes == [(16, 16), (48, 32)]
