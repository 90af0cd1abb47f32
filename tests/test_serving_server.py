"""The local server, started for real on 127.0.0.1, with a model exported by a real (tiny) training."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.modeldir.reader import load_model
from dogbreed.serving.app import create_app
from dogbreed.serving.client import EndpointError, predict_files
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.settings import ServerSettings
from tests.serving_support import encode, invoke, request, running_server

pytestmark = pytest.mark.slow  # needs the shared tiny training run

LIMITS = RequestLimits(max_body_bytes=300_000, max_pixels=1_000_000, max_images=4)


@pytest.fixture(scope="module")
def model_dir(trained_run: Path) -> Path:
    return trained_run / "model"


@pytest.fixture(scope="module")
def test_images(shapes3: Path) -> list[Path]:
    """One test-split image of each class, in class order."""
    return [sorted(d.iterdir())[0] for d in sorted((shapes3 / "test").iterdir())]


@pytest.fixture(scope="module")
def port(model_dir: Path):
    with running_server(create_app(model_dir, ServerSettings(max_wait_ms=0, limits=LIMITS))) as port:
        yield port


def test_ping_answers_200_once_the_model_is_loaded(port):
    answer = request(port, "GET", "/ping")
    assert answer.status == 200 and answer.json() == {"status": "ok"}


def test_jpeg_and_png_get_the_model_own_prediction(port, model_dir, test_images):
    class_names = json.loads((model_dir / "model.json").read_text())["class_names"]
    reference = load_model(model_dir)  # the export's own prediction path, unfused, one image at a time
    for path in test_images:
        jpeg = path.read_bytes()
        png = encode(Image.open(path).convert("RGB"), "PNG")  # the same pixels, losslessly
        by_jpeg = invoke(port, jpeg, "image/jpeg", "application/json; probabilities=true")
        by_png = invoke(port, png, "image/png", "application/json; probabilities=true")
        assert by_jpeg.status == by_png.status == 200, by_jpeg.body
        assert by_jpeg.content_type == "application/json"
        assert by_jpeg.json() == by_png.json()
        (prediction,) = by_jpeg.json()["predictions"]
        expected = reference.probabilities(reference.preprocess([path]))[0].tolist()
        assert prediction["probabilities"] == pytest.approx(expected, abs=1e-4)
        top = prediction["topk"][0]
        assert top["class_name"] == class_names[top["index"]]
        assert top["index"] == max(range(len(expected)), key=expected.__getitem__)
        assert [p["index"] for p in prediction["topk"]] == sorted(
            range(len(expected)), key=lambda i: -prediction["probabilities"][i]
        )


def test_trained_model_served_recognises_the_test_images(port, test_images):
    # The tiny run reaches >= 0.75 test accuracy; one image per class, in class order.
    tops = [
        invoke(port, p.read_bytes(), "image/jpeg").json()["predictions"][0]["topk"][0]["index"]
        for p in test_images
    ]
    assert sum(top == i for i, top in enumerate(tops)) >= 2, tops


def test_topk_from_query_or_accept_and_json_base64_batches(port, test_images):
    jpeg = test_images[0].read_bytes()
    assert len(invoke(port, jpeg, "image/jpeg", query="?topk=1").json()["predictions"][0]["topk"]) == 1
    assert (
        len(
            invoke(port, jpeg, "application/x-image", "application/json; k=2").json()["predictions"][0][
                "topk"
            ]
        )
        == 2
    )
    body = json.dumps({"images": [base64.b64encode(p.read_bytes()).decode() for p in test_images]})
    answer = invoke(port, body.encode(), "application/json")
    assert answer.status == 200
    singles = [
        invoke(port, p.read_bytes(), "application/octet-stream").json()["predictions"][0] for p in test_images
    ]
    assert [p["topk"][0]["index"] for p in answer.json()["predictions"]] == [
        p["topk"][0]["index"] for p in singles
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        (b"\xff\xd8\xff\xe0", "text/plain", None, 415, "text/plain unsupported"),
        (b"", "image/jpeg", None, 400, "request body is empty"),
        (b"GIF89 but not really", "image/jpeg", None, 400, "not an image"),
        (b'{"url": "http://127.0.0.1/dog.jpg"}', "application/json", None, 400, "URLs are not fetched"),
        (b'{"image": "@@@"}', "application/json", None, 400, "not valid base64"),
        (b"x" * 300_001, "image/jpeg", None, 413, "over the limit of 300000"),
        (encode(Image.new("1", (2000, 1000)), "PNG"), "image/png", None, 413, "2000000 pixels"),
        (b'{"images": ["A", "A", "A", "A", "A"]}', "application/json", None, 413, "5 images"),
        (b"\xff\xd8\xff\xe0", "image/jpeg", "text/csv", 406, "text/csv is not supported"),
        (b"\xff\xd8\xff\xe0", "image/jpeg", "application/json; topk=-1", 400, "topk=-1"),
    ],
)
def test_bad_requests_get_their_4xx_as_json(port, body, content_type, accept, status, message):
    answer = invoke(port, body, content_type, accept)
    assert answer.status == status, answer.body
    error = answer.json()
    assert error["status"] == status and message in error["message"]
    assert request(port, "GET", "/ping").status == 200  # and the server goes on


def test_oversized_chunked_body_is_cut_off_with_413(port):
    answer = request(
        port, "POST", "/invocations", b"x" * 400_000, {"Content-Type": "image/jpeg"}, chunked=True
    )
    assert answer.status == 413 and "over the limit of 300000 bytes" in answer.json()["message"]


def test_client_prints_topk_for_files_and_names_the_file_at_fault(port, test_images, tmp_path):
    results = predict_files(test_images[:2], f"http://127.0.0.1:{port}", topk=2)
    assert list(results) == [str(p) for p in test_images[:2]]
    assert all(len(top) == 2 for top in results.values())
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with pytest.raises(EndpointError, match=r"notes\.jpg: .* answered 400: .*not an image"):
        predict_files([bad], f"http://127.0.0.1:{port}")


def test_concurrent_requests_are_batched_together(model_dir, test_images):
    # A batch that is not full waits up to 60 s for company: only real batching answers these promptly,
    # and /stats shows the four requests ran as one forward pass.
    settings = ServerSettings(max_batch_size=4, max_wait_ms=60_000, limits=LIMITS)
    bodies = [p.read_bytes() for p in (test_images + test_images)[:4]]
    with running_server(create_app(model_dir, settings)) as port:
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda b: invoke(port, b, "image/jpeg", "application/json; probabilities=true"), bodies
                )
            )
        stats = request(port, "GET", "/stats").json()
    assert stats["batches"] == 1 and stats["batch_sizes"] == {"4": 1}, stats
    # Each request got the answer for its own image, not a neighbour's in the batch.
    firsts = [a.json()["predictions"][0]["probabilities"] for a in answers]
    assert firsts[0] == pytest.approx(firsts[3], abs=1e-5)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert firsts[i] != pytest.approx(firsts[j], abs=1e-5)
