"""The server as a user starts it (serve/deploy.py, conf/deploy.yaml) under a mix of good and bad requests,
and where it listens. The mix is benchmarks/load_test.py's own (the 2,000-request run), on a small scale."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.data.preprocessing import Preprocessing
from dogbreed.model.network import build_network
from dogbreed.modeldir.writer import export_model
from tests.hostile_images import decompression_bomb_png
from tests.http_client import local_server, ping_status
from tests.images import gradient, jpeg_bytes
from tests.load_mix import BAD_KINDS, GOOD, checks, request_plan, run_load, send_all

# What each bad kind's message says with deploy.yaml's default limits (6 MiB bodies, 40 MP images).
MESSAGES = {
    "garbage_bytes": "is not an image",
    "wrong_content_type": "Content-Type text/plain unsupported",
    "empty_body": "request body is empty",
    "huge_body_50mb": "52428800 bytes, over the limit of 6291456",
    "decompression_bomb_png": "is 900000000 pixels, over the limit of 40000000",
    "thin_png_1x30000": "1x30000 pixels, an aspect ratio of 30000:1, over the limit of 20:1",
    "wide_png_30000x1": "30000x1 pixels, an aspect ratio of 30000:1",
    "thin_png_1x39m": "1x39000000 pixels, an aspect ratio",
    "request_over_pixel_budget": "over the request limit of 80000000",
    "deep_json": "nested deeper than the parser follows",
    "huge_int_json": "not valid JSON",
    "huge_json_key_5mb": 'JSON body must be {"image"',
}
ANSWERED_200 = {kind for kind, status in BAD_KINDS.items() if status == 200}  # odd but good: corrupt EXIF


def good_images() -> list[tuple[bytes, str]]:
    png = io.BytesIO()
    gradient((40, 56)).save(png, "PNG")
    jpegs = [(jpeg_bytes(gradient((48 + 8 * i, 40))), "image/jpeg") for i in range(3)]
    return [*jpegs, (png.getvalue(), "image/png")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """serve/deploy.py with an untrained 3-class ResNet18 at 32 px (only the statuses matter here) and no
    host override: it binds where conf/deploy.yaml says. Yields (port, server log)."""
    root = tmp_path_factory.mktemp("deploy")
    model_dir = export_model(
        build_network("resnet18", 3),
        root / "model",
        arch="resnet18",
        class_names=["a", "b", "c"],
        preprocessing=Preprocessing(crop_size=32, resize_size=36),
    )
    log = root / "server.log"
    overrides = ["server.body_timeout_s=2"]  # the slow clients' wait
    with local_server(model_dir, overrides, log=log, run_dir=root / "run") as (port, _pid):
        yield port, log


@pytest.mark.slow
def test_mixed_load_gets_no_5xx_and_each_bad_request_its_4xx_with_a_message(server):
    port, log = server
    report = run_load(
        "127.0.0.1", port, good_images(), 130, concurrency=8, bad_fraction=0.3, slow_clients=2
    )  # 39 bad requests: 3 of each kind

    assert report["server_errors_5xx"] == 0, report["statuses"]
    kinds = report["by_kind"]
    assert set(kinds) == {GOOD, *BAD_KINDS}
    assert kinds[GOOD]["statuses"] == {"200": kinds[GOOD]["sent"]}
    for kind, status in BAD_KINDS.items():
        assert kinds[kind]["statuses"] == {str(status): kinds[kind]["sent"]}, (kind, kinds[kind])
        assert kinds[kind]["sent"] == 3
        if kind not in ANSWERED_200:
            assert kinds[kind]["with_message"] == 3, kind
    assert report["largest_error_body_bytes"] < 1024
    assert report["slow_clients"] == {"sent": 2, "statuses": [408, 408]}
    assert ping_status("127.0.0.1", port) == 200
    assert checks({**report, "ping_after": 200}) == {
        "no_5xx": True,
        "good_requests_200": True,
        "bad_requests_4xx_with_message": True,
        "odd_but_good_requests_200": True,
        "error_bodies_short": True,
        "ping_after_200": True,
        "slow_clients_408": True,
        "ping_p99_under_1s": True,
        "ok": True,
    }
    assert "Traceback" not in log.read_text()  # no fault was logged on the way


@pytest.mark.slow
def test_each_bad_kind_gets_the_message_that_names_its_fault(server):
    port, _ = server
    plan = [p for p in request_plan(good_images(), 2 * len(BAD_KINDS), bad_fraction=0.5) if p.kind != GOOD]
    outcomes, _ = send_all("127.0.0.1", port, plan, concurrency=2)
    assert {o.kind for o in outcomes} == set(BAD_KINDS)
    for outcome in outcomes:
        if outcome.kind in ANSWERED_200:
            assert outcome.status == 200, outcome
        else:
            assert outcome.message and MESSAGES[outcome.kind] in outcome.message, outcome


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if int(port_hex, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # host byte order in 32-bit words
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_server_listens_on_127_0_0_1_only_unless_told_otherwise(server):
    port, _ = server
    assert listening_addresses(port) == {"127.0.0.1"}


def test_request_plan_spreads_each_bad_kind_evenly_among_the_good_images():
    images = good_images()
    plan = request_plan(images, 104, bad_fraction=0.25)
    kinds = [p.kind for p in plan]
    assert kinds.count(GOOD) == 78
    assert all(kinds.count(kind) == 2 for kind in BAD_KINDS)
    assert kinds[:8] == [GOOD, GOOD, GOOD, "garbage_bytes", GOOD, GOOD, GOOD, "wrong_content_type"]
    assert [p.body for p in plan if p.kind == GOOD][:4] == [body for body, _ in images]
    assert [p.kind for p in request_plan(images, 10)] == [GOOD] * 10


def test_decompression_bomb_is_a_small_valid_png_announcing_900_megapixels(monkeypatch):
    bomb = decompression_bomb_png()
    assert len(bomb) < 200_000
    with pytest.raises(Image.DecompressionBombError, match="900000000 pixels"):
        Image.open(io.BytesIO(bomb))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(io.BytesIO(bomb)) as img:
        assert img.size == (30000, 30000) and img.format == "PNG"
        img.verify()  # chunk checksums hold: a real bomb, not a broken file
