"""Request decoding, response building and the dynamic batcher, without a server."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import torch
from PIL import Image

from dogbreed.serving.batching import DynamicBatcher
from dogbreed.serving.decoding import RequestLimits, decode_image, read_request
from dogbreed.serving.errors import (
    BadRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from dogbreed.serving.responses import OutputOptions, build_response, parse_output_options
from tests.hostile_images import decompression_bomb_png
from tests.serving_support import encode

PHOTO = Image.new("RGB", (48, 40), (180, 120, 60))


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("image/jpeg", "JPEG"),
        ("image/png", "PNG"),
        ("application/x-image", "JPEG"),
        ("application/octet-stream", "PNG"),
        ("IMAGE/JPEG; charset=binary", "JPEG"),
    ],
)
def test_raw_image_bodies_decode_to_rgb(content_type, fmt):
    (image,) = read_request(encode(PHOTO, fmt), content_type)
    assert (image.width, image.height) == (48, 40)
    decoded = decode_image(image)
    assert decoded.mode == "RGB" and decoded.size == (48, 40)


def test_png_bytes_sent_as_jpeg_are_read_like_evaluation_reads_them():
    (image,) = read_request(encode(PHOTO.convert("RGBA"), "PNG"), "image/jpeg")
    assert decode_image(image).mode == "RGB"


def test_json_base64_images_in_order_and_data_urls():
    jpeg, png = encode(PHOTO, "JPEG"), encode(Image.new("RGB", (20, 30)), "PNG")
    body = json.dumps(
        {
            "images": [
                base64.b64encode(jpeg).decode(),
                "data:image/png;base64," + base64.b64encode(png).decode(),
            ]
        }
    )
    images = read_request(body, "application/json")
    assert [(i.width, i.height) for i in images] == [(48, 40), (20, 30)]
    (single,) = read_request(
        json.dumps({"image": base64.b64encode(png).decode()}).encode(), "application/json"
    )
    assert single.data == png


@pytest.mark.parametrize(
    ("body", "content_type", "error", "message"),
    [
        (b"\xff\xd8\xff", "text/plain", UnsupportedMediaTypeError, "text/plain unsupported"),
        (b"\xff\xd8\xff", None, UnsupportedMediaTypeError, r"\(none\) unsupported"),
        (b"", "image/jpeg", BadRequestError, "request body is empty"),
        (b"this is not an image", "image/png", BadRequestError, "request body is not an image"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png", BadRequestError, "request body"),
        (b"{not json", "application/json", BadRequestError, "not valid JSON"),
        (b'["a"]', "application/json", BadRequestError, r'must be \{"image"'),
        (
            b'{"url": "https://example.com/dog.jpg"}',
            "application/json",
            BadRequestError,
            "URLs are not fetched",
        ),
        (b'{"image": "https://example.com/dog.jpg"}', "application/json", BadRequestError, "fetches nothing"),
        (b'{"image": "***"}', "application/json", BadRequestError, "field image is not valid base64"),
        (b'{"images": ["AAAA", 3]}', "application/json", BadRequestError, r"images\[1\] must be a base64"),
        (b'{"images": []}', "application/json", BadRequestError, "non-empty list"),
        (b'{"image": "aGVsbG8="}', "application/json", BadRequestError, "JSON field image is not an image"),
    ],
)
def test_bad_requests_raise_typed_errors_naming_the_fault(body, content_type, error, message):
    with pytest.raises(error, match=message) as info:
        read_request(body, content_type)
    assert info.value.status == {BadRequestError: 400, UnsupportedMediaTypeError: 415}[error]


def test_limits_give_413_before_decoding():
    limits = RequestLimits(max_body_bytes=1000, max_pixels=48 * 40 - 1, max_images=1)
    with pytest.raises(PayloadTooLargeError, match="1001 bytes, over the limit of 1000"):
        read_request(b"x" * 1001, "image/jpeg", limits)
    with pytest.raises(PayloadTooLargeError, match="48x40 = 1920 pixels, over the limit of 1919") as info:
        read_request(encode(PHOTO, "PNG"), "image/png", limits)
    assert info.value.status == 413
    two = json.dumps({"images": ["AAAA", "AAAA"]})
    with pytest.raises(PayloadTooLargeError, match="2 images, over the limit of 1"):
        read_request(two, "application/json", limits)


def test_decompression_bomb_is_refused_from_its_header():
    # 50 megapixels in a few kilobytes: decoding it would need 150 MB as RGB.
    bomb = encode(Image.new("1", (10_000, 5_000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLargeError, match="10000x5000 = 50000000 pixels"):
        read_request(bomb, "image/png")
    # 900 megapixels: past Pillow's own guard, which refuses it while parsing; the same 413 and message.
    with pytest.raises(
        PayloadTooLargeError, match="request body is 900000000 pixels, over the limit of 40000000"
    ):
        read_request(decompression_bomb_png(), "image/png")


def test_output_options_from_accept_params_and_query():
    assert parse_output_options(None) == OutputOptions(topk=5, probabilities=False)
    assert parse_output_options("application/json; topk=2; probabilities=true") == OutputOptions(2, True)
    assert parse_output_options("*/*", {"k": "7"}, default_topk=3) == OutputOptions(7, False)
    assert parse_output_options("application/json;topk=2", {"topk": "4"}).topk == 4  # the query wins
    assert parse_output_options("text/html, application/json; topk=3").topk == 3
    with pytest.raises(NotAcceptableError, match="Accept text/csv is not supported") as info:
        parse_output_options("text/csv")
    assert info.value.status == 406
    for bad in ({"topk": "0"}, {"topk": "three"}, {"probabilities": "maybe"}):
        with pytest.raises(BadRequestError, match=next(iter(bad))):
            parse_output_options("application/json", bad)


def test_response_has_topk_names_and_the_full_vector_on_request():
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    names = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    answer = build_response(probs, names, OutputOptions(topk=2, probabilities=True))
    first = answer["predictions"][0]
    assert first["topk"][0] == {
        "index": 1,
        "class_name": "002.Afghan_hound",
        "label": "Afghan hound",
        "probability": 0.7,
    }
    assert [p["index"] for p in first["topk"]] == [1, 2]
    assert first["probabilities"] == [0.1, 0.7, 0.2]
    assert [p["index"] for p in answer["predictions"][1]["topk"]] == [0, 2]
    no_vector = build_response(probs, names, OutputOptions(topk=10))
    assert (
        "probabilities" not in no_vector["predictions"][0] and len(no_vector["predictions"][0]["topk"]) == 3
    )


def test_batcher_runs_concurrent_items_together_and_returns_each_its_own_result():
    seen: list[list[int]] = []

    def run_batch(items: list[int]) -> list[int]:
        seen.append(items)
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(run_batch, max_batch_size=3, max_wait_ms=60_000)
        batcher.start()
        try:
            # A full batch runs at once: the 60 s wait would only apply to a batch that stays short.
            return await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [10, 20, 30]
    assert seen == [[1, 2, 3]]


def test_batcher_hands_a_batch_fault_to_its_requests_and_keeps_serving():
    def run_batch(items: list[int]) -> list[int]:
        if 0 in items:
            raise ZeroDivisionError("bad batch")
        return items

    async def scenario() -> tuple[BaseException, int]:
        batcher = DynamicBatcher(run_batch, max_batch_size=1, max_wait_ms=0)
        batcher.start()
        try:
            failed = await asyncio.gather(batcher.submit(0), return_exceptions=True)
            return failed[0], await batcher.submit(5)
        finally:
            await batcher.stop()

    error, after = asyncio.run(scenario())
    assert isinstance(error, ZeroDivisionError) and after == 5


def test_truncated_jpeg_decodes_grey_filled_like_training_data():
    data = encode(Image.effect_noise((128, 128), 60).convert("RGB"), "JPEG")
    assert len(data) > 4000  # so that half of it still holds the whole header
    (image,) = read_request(data[: len(data) // 2], "image/jpeg")
    assert decode_image(image).size == (128, 128)


def test_body_given_as_text_is_read_back_as_bytes():
    data = encode(PHOTO, "PNG")
    (image,) = read_request(data.decode("latin-1"), "image/png")
    assert image.data == data and io.BytesIO(image.data).read(4) == b"\x89PNG"
