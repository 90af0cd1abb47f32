"""server.max_queue: past it, 503 with Retry-After at once, while /ping stays 200 and admitted work ends."""

from __future__ import annotations

import base64
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dogbreed.serving.app import create_app
from dogbreed.serving.settings import ServerSettings
from tests.serving_support import invoke, request, running_server

pytestmark = pytest.mark.slow  # needs the shared tiny training run


def post(port: int, body: bytes, content_type: str) -> tuple[int, str | None, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.getheader("Retry-After"), json.loads(response.read())
    finally:
        conn.close()


def wait_for_queued(port: int, images: int, timeout: float = 60) -> None:
    """Poll /stats until `images` are admitted and waiting (the condition itself, not a guessed delay)."""
    deadline = time.monotonic() + timeout
    while request(port, "GET", "/stats").json()["queued_images"] != images:
        assert time.monotonic() < deadline, f"never {images} images queued"
        time.sleep(0.02)


def test_saturated_queue_answers_503_with_retry_after_at_once_and_ping_stays_200(trained_run: Path, shapes3):
    image = sorted((shapes3 / "test").rglob("*.jpg"))[0].read_bytes()
    two_images = json.dumps({"images": [base64.b64encode(image).decode()] * 2}).encode()
    # A batch runs only when two images are in it (the wait is far longer than the test): the first request
    # stays queued until another image joins it, which holds the queue at a known fill.
    settings = ServerSettings(max_batch_size=2, max_wait_ms=600_000, max_queue=2, retry_after_s=3)
    with running_server(create_app(trained_run / "model", settings)) as port, ThreadPoolExecutor(2) as pool:
        first = pool.submit(invoke, port, image, "image/jpeg")
        wait_for_queued(port, 1)

        status, retry_after, body = post(port, two_images, "application/json")  # 1 + 2 > max_queue
        assert status == 503 and retry_after == "3"
        assert body["error"] == "ServiceUnavailableError" and "saturated" in body["message"]
        assert request(port, "GET", "/ping").status == 200
        assert not first.done()  # the refusal did not wait for the queued request

        second = pool.submit(invoke, port, image, "image/jpeg")  # 1 + 1 fits, and fills the batch
        assert first.result(timeout=120).status == 200 and second.result(timeout=120).status == 200
        stats = request(port, "GET", "/stats").json()
    assert stats["queued_images"] == 0 and stats["batch_sizes"] == {"2": 1}
