"""Hostile and unlucky requests against the real local server: each gets its 4xx (never a 5xx), costs a
bounded amount of memory (peak RSS read from /proc, of the server and of the workers that decode for it),
never replays its input, and leaves the connection usable or says it closes."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image

from dogbreed.data.preprocessing import preprocessing_for
from dogbreed.model.network import build_network
from dogbreed.modeldir.writer import export_model
from dogbreed.serving.app import create_app
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.settings import ServerSettings
from tests.hostile_images import (
    black_png,
    deep_json,
    huge_int_json,
    huge_key_json,
    jpeg_with_corrupt_exif,
    pixel_budget_json,
)
from tests.http_client import local_server
from tests.serving_support import encode, invoke, request, running_server

T = TypeVar("T")
MB = 2**20
# What one refused request may add to the server's peak memory: its body and a few copies of it, never
# a decoded or resized image.
REFUSAL_MEMORY_BOUND = 64 * MB


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet18 exported for 64-px inputs: what it predicts does not matter here."""
    out = tmp_path_factory.mktemp("hostile") / "model"
    net = build_network("resnet18", 3, None)
    return export_model(
        net,
        out,
        arch="resnet18",
        class_names=["001.a", "002.b", "003.c"],
        preprocessing=preprocessing_for("resnet18", 64),
    )


@pytest.fixture(scope="module")
def port(model_dir: Path) -> Iterator[int]:
    settings = ServerSettings(
        threads=1,
        preprocess_workers=1,
        max_wait_ms=0,
        body_timeout_s=1.0,
        limits=RequestLimits(max_pixels=40_000_000, max_request_pixels=80_000_000),
    )
    with running_server(create_app(model_dir, settings)) as port:
        yield port


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _this_process_and_descendants() -> list[int]:
    """This process and every process under it (the preprocessing workers, forked by the fork server)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    tree = [os.getpid()]
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def peak_memory_growth(action: Callable[[], T]) -> tuple[T, int]:
    """Run `action` (the server answers in a thread of this process, its workers in processes under it)
    and return its result with how far their peak resident memory rose above the memory before it, in
    bytes, summed over the processes (each one's peak, so an upper bound of the peak together)."""
    before = {pid: _status_kb(pid, "VmRSS") for pid in _this_process_and_descendants()}
    for pid in before:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM, the peak, to the current RSS
    result = action()
    return result, sum(_status_kb(pid, "VmHWM") - rss for pid, rss in before.items()) * 1024


def assert_client_error(answer, status: int, words: str) -> dict:
    assert answer.status == status, answer.body[:500]
    assert answer.content_type == "application/json"
    body = answer.json()
    assert body["status"] == status and words in body["message"], body
    assert "Traceback" not in body["message"] and "/" not in body["error"]
    return body


def test_a_large_png_costs_one_decoded_image_not_one_per_image_of_the_request(port):
    """Images are decoded one after the other, each dropped once transformed. First in this module: the
    peak is measured against memory that no earlier request has already grown."""
    one = base64.b64encode(encode(Image.new("RGB", (4000, 2500), (90, 60, 30)), "PNG")).decode()
    body = json.dumps({"images": [one] * 7}).encode()  # 70 MP: within the request budget
    answer, growth = peak_memory_growth(lambda: invoke(port, body, "application/json"))
    assert answer.status == 200, answer.body[:300]
    assert len(answer.json()["predictions"]) == 7
    # One 10 MP image decoded as RGB (4 bytes a pixel in Pillow) and its conversions; all seven at once
    # would take 280 MB.
    assert growth < 150 * MB, f"peak memory rose by {growth / MB:.0f} MB"


@pytest.mark.parametrize(("width", "height"), [(1, 30_000), (30_000, 1), (1, 39_000_000)])
def test_thin_images_are_refused_before_the_resize_blows_them_up(port, width, height):
    answer, growth = peak_memory_growth(lambda: invoke(port, black_png(width, height), "image/png"))
    assert_client_error(answer, 400, "aspect ratio")
    assert f"{width}x{height}" in answer.json()["message"]
    assert growth < REFUSAL_MEMORY_BOUND, f"peak memory rose by {growth / MB:.0f} MB"


def test_a_request_whose_images_together_pass_the_pixel_budget_is_refused_undecoded(port):
    body = pixel_budget_json(images=32, side=6_300)  # each 39.7 MP, within max_pixels; 1.27 GP together
    answer, growth = peak_memory_growth(lambda: invoke(port, body, "application/json"))
    assert_client_error(answer, 413, "request limit of 80000000")
    assert growth < REFUSAL_MEMORY_BOUND, f"peak memory rose by {growth / MB:.0f} MB"


def test_a_jpeg_with_corrupt_exif_is_predicted_like_any_other(port):
    answer = invoke(port, jpeg_with_corrupt_exif(), "image/jpeg")
    assert answer.status == 200, answer.body[:500]
    assert len(answer.json()["predictions"][0]["topk"]) == 3


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (deep_json(100_000), "nested deeper"),
        (huge_int_json(5_000), "not valid JSON"),
        (huge_key_json(5 * MB), "must be"),
    ],
    ids=["deep", "huge_int", "huge_key"],
)
def test_hostile_json_gets_a_short_400(port, body, words):
    answer = invoke(port, body, "application/json")
    assert_client_error(answer, 400, words)
    assert len(answer.body) < 1024, "the error replays the request"


def test_the_connection_stays_usable_after_each_error(port):
    """A client pool reuses its connection: after an error the next request on it must be answered."""
    good = encode(Image.new("RGB", (40, 30), (10, 200, 10)), "JPEG")
    bad = [
        (deep_json(100_000), "application/json"),
        (huge_int_json(), "application/json"),
        (black_png(1, 30_000), "image/png"),
        (b"garbage", "image/jpeg"),
        (good, "text/plain"),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for body, content_type in bad:
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            assert 400 <= response.status < 500
            if (response.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/invocations", body=good, headers={"Content-Type": "image/jpeg"})
            follow_up = conn.getresponse()
            assert follow_up.status == 200, follow_up.read()[:300]
            follow_up.read()
    finally:
        conn.close()


def test_a_client_that_stops_sending_its_body_gets_408_and_is_disconnected(port):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\xff\xd8\xff" + bytes(100)
        )
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after answering: recv returns b""
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "RequestTimeoutError"


def test_head_ping_answers_200(port):
    answer = request(port, "HEAD", "/ping")
    assert answer.status == 200 and answer.body == b""


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [("image/webp", "WEBP"), ("image/bmp", "BMP"), ("image/gif", "GIF"), ("image/tiff", "TIFF")],
)
def test_every_decoded_format_is_accepted_under_its_own_content_type(port, content_type, fmt):
    answer = invoke(port, encode(Image.new("RGB", (40, 30), (200, 20, 20)), fmt), content_type)
    assert answer.status == 200, answer.body[:300]


@pytest.mark.slow
def test_the_deployed_server_closes_connections_whose_headers_never_complete(model_dir, tmp_path):
    """serve/deploy.py as a user starts it: a client sending its headers byte by byte, or nothing, is
    disconnected once server.header_timeout_s has passed; other clients are served meanwhile."""
    overrides = ["server.header_timeout_s=1", "server.threads=1", "server.preprocess_workers=1"]
    with local_server(model_dir, overrides, log=tmp_path / "server.log", run_dir=tmp_path) as (port, _):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as silent,
            socket.create_connection(("127.0.0.1", port), timeout=30) as slow,
        ):
            slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
            assert request(port, "HEAD", "/ping").status == 200
            # recv returns b"" once the server closes; a server without the deadline never does, and
            # the socket's own timeout fails the test.
            assert silent.recv(1024) == b""
            assert slow.recv(1024) == b""
        assert request(port, "GET", "/ping").status == 200
