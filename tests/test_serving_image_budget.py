"""The image path under attack through the real local server and the SageMaker handler's functions: the
TIFF/IM polyglot costs what the 16 x 16 TIFF it was checked as costs, a 1,000-scan progressive JPEG is
refused at once while ordinary requests are answered, and every handler function decodes as the servers
do."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.serving import handler
from dogbreed.serving.app import create_app
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.engine import InferenceEngine
from dogbreed.serving.errors import PayloadTooLargeError
from dogbreed.serving.settings import ServerSettings
from tests.hostile_images import many_scan_jpeg, tiff_im_polyglot
from tests.serving_support import encode, export_untrained_model, invoke, running_server
from tests.test_serving_hostile import assert_client_error, peak_memory_growth

MB = 2**20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet18 exported for 64-px inputs: what it predicts does not matter here."""
    return export_untrained_model(tmp_path_factory.mktemp("image-budget") / "model")


@pytest.fixture(scope="module")
def port(model_dir: Path):
    settings = ServerSettings(threads=1, preprocess_workers=1, max_wait_ms=0, limits=RequestLimits())
    with running_server(create_app(model_dir, settings)) as port:
        yield port


def test_the_polyglot_costs_what_the_tiff_it_was_checked_as_costs(port):
    """Read as IM it would be 1 x 100,000 pixels (gigabytes once resized); read as the TIFF the check saw,
    it is 16 x 16 and answered like the same TIFF written plainly."""
    polyglot = tiff_im_polyglot(im_height=100_000)
    answer, growth = peak_memory_growth(lambda: invoke(port, polyglot, "image/tiff"))
    assert growth < 300 * MB, f"peak memory rose by {growth / MB:.0f} MB"
    assert answer.status == 200, answer.body[:300]
    with Image.open(io.BytesIO(polyglot), formats=["TIFF"]) as tiff:
        plain = invoke(port, encode(tiff.convert("L"), "PNG"), "image/png")
    assert answer.json() == plain.json()


def test_a_thousand_scan_jpeg_is_refused_at_once_and_others_are_served_meanwhile(port):
    bomb = many_scan_jpeg(13_000, 13_000, scans=1_000)  # decoding it takes ~24 s and ~1 GB
    ordinary = encode(Image.new("RGB", (200, 200), (30, 160, 90)), "JPEG")
    bomb_answer: list[tuple[int, float]] = []

    def send_bomb() -> None:
        start = time.monotonic()
        bomb_answer.append((invoke(port, bomb, "image/jpeg").status, time.monotonic() - start))

    bomb_thread = threading.Thread(target=send_bomb)
    bomb_thread.start()
    # Ordinary requests while the bomb is in flight (three at least, whenever it is answered).
    ordinary_seconds, deadline = [], time.monotonic() + 60
    while len(ordinary_seconds) < 3 or (bomb_thread.is_alive() and time.monotonic() < deadline):
        start = time.monotonic()
        assert invoke(port, ordinary, "image/jpeg").status == 200
        ordinary_seconds.append(time.monotonic() - start)
    bomb_thread.join(timeout=60)
    assert bomb_answer and bomb_answer[0][0] == 413 and bomb_answer[0][1] < 5.0, bomb_answer
    assert max(ordinary_seconds) < 3.0, ordinary_seconds
    answer = invoke(port, bomb, "image/jpeg")
    assert_client_error(answer, 413, "JPEG of 1000 scans, over the limit of 64")


def test_every_handler_function_decodes_with_the_models_draft_size(model_dir, monkeypatch):
    """input_fn/predict_fn/output_fn answer what transform_fn answers: a JPEG over the pixel limit at full
    size but within it after draft reduction (as the servers decode it) is predicted by both."""
    monkeypatch.setenv("DOGBREED_MAX_PIXELS", "1000000")
    monkeypatch.setenv("DOGBREED_TOPK", "3")
    photo = encode(Image.new("RGB", (2000, 1500), (120, 90, 60)), "JPEG")  # 3 MP; 250 x 188 after draft
    engine = InferenceEngine.load(model_dir, device="cpu", engine="torch", threads=1)
    by_transform = handler.transform_fn(engine, photo, "image/jpeg", "application/json")
    request = handler.input_fn(photo, "image/jpeg")
    by_parts = handler.output_fn(handler.predict_fn(request, engine), "application/json")
    assert by_parts == by_transform
    # Over the limit even after draft reduction: the same 413 from both (predict_fn raises it as the
    # inference toolkit's error type when the toolkit is installed).
    monkeypatch.setenv("DOGBREED_MAX_PIXELS", "10000")
    with pytest.raises(PayloadTooLargeError, match="2000x1500") as by_transform_error:
        handler.transform_fn(engine, photo, "image/jpeg", None)
    with pytest.raises(Exception, match="2000x1500") as by_parts_error:
        handler.predict_fn(handler.input_fn(photo, "image/jpeg"), engine)
    status = getattr(by_parts_error.value, "status_code", getattr(by_parts_error.value, "status", None))
    assert status == by_transform_error.value.status == 413
