"""What one client can hold of the deployed server (serve/deploy.py on 127.0.0.1): idle sockets never starve
/ping or /invocations, a slow-to-decode request is stopped at its budget without holding up others, and
requests whose framing or path a proxy could read otherwise are refused, never redirected."""

from __future__ import annotations

import http.client
import json
import resource
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from dogbreed.serving.errors import BadRequestError
from dogbreed.serving.responses import parse_output_options
from tests.hostile_images import ordinary_jpeg, rgba_png_request
from tests.http_client import (
    get_json,
    idle_sockets,
    local_server,
    post,
    still_open,
    timed_get,
    wait_until_busy,
)
from tests.serving_support import export_untrained_model, invoke

MAX_CONNECTIONS = 200
# The slow request's budget: 1 s to read it and its headers, plus 0.005 s for each of its 320 megapixels,
# 2.6 s in all; decoding it whole takes several times that on any machine.
BUDGET = ["limits.decode_timeout_s=1", "limits.decode_s_per_megapixel=0.005"]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("connections")
    model_dir = export_untrained_model(root / "model")
    overrides = [
        "server.threads=1",
        f"server.max_connections={MAX_CONNECTIONS}",
        "limits.max_request_pixels=320000000",  # so that the slow request is allowed
        *BUDGET,
    ]
    with local_server(model_dir, overrides, log=root / "server.log", run_dir=root / "run") as (port, _):
        yield port


def allow_open_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"the open-file limit ({hard}) is under the {count} sockets this test holds")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def open_sockets_settle_at_most(sockets: list[socket.socket], bound: int, timeout_s: float = 10) -> int:
    """Poll until at most `bound` of `sockets` are open (the server's closes have arrived); how many are."""
    deadline = time.monotonic() + timeout_s
    while (count := still_open(sockets)) > bound and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval; the condition is the sockets' own state
    return count


@pytest.mark.slow
@pytest.mark.parametrize("count", [150, 1000])
def test_idle_sockets_never_starve_ping_or_invocations(port: int, count: int):
    """uvicorn's limit_concurrency (128) counted these and answered 503 to everything. The server accepts
    connections in order, so /ping is answered only once every idle socket is held or has been closed."""
    allow_open_files(count + 256)
    with idle_sockets(port, count) as sockets:
        assert timed_get(port, "/ping")[0] == 200
        status, answer, _ = post(port, ordinary_jpeg(), "image/jpeg")
        assert status == 200 and len(answer["predictions"][0]["topk"]) == 3
        if count <= MAX_CONNECTIONS:
            assert still_open(sockets) == count  # under the bound nothing is closed early
        else:  # past it, the connections idle the longest made room for the newer ones
            assert open_sockets_settle_at_most(sockets, MAX_CONNECTIONS) <= MAX_CONNECTIONS
    assert timed_get(port, "/ping")[0] == 200


@pytest.mark.slow
def test_a_slow_request_is_stopped_at_its_budget_and_holds_up_no_other(port: int):
    slow = rgba_png_request(images=32, size=(4000, 2500))  # 320 MP of RGBA to decode and composite
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, port, slow, "application/json")
        wait_until_busy(port)
        status, _, ordinary_s = post(port, ordinary_jpeg(), "image/jpeg")
        assert status == 200 and ordinary_s < 3, (status, ordinary_s)
        slow_status, answer, slow_s = pending.result()
    assert slow_status == 413 and "still decoding after 2.6 s" in answer["message"], answer
    assert slow_s < 5, slow_s
    assert get_json("127.0.0.1", port, "/stats")["decode_timeouts"] == 1
    # The stopped worker's replacement starts after the answer; then both workers serve again.
    deadline = time.monotonic() + 60
    while (stats := get_json("127.0.0.1", port, "/stats"))["preprocess_workers_busy"]:
        assert time.monotonic() < deadline, stats
        time.sleep(0.02)  # polling interval; the condition is the server's own count
    assert stats["preprocess_workers_alive"] == stats["preprocess_workers"] >= 2
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(lambda _: post(port, ordinary_jpeg(), "image/jpeg")[0], range(4)))
    assert statuses == [200] * 4


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):  # b"" once the server closes; the socket's timeout fails the test
        answer += chunk
    return answer


@pytest.mark.slow
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(port: int):
    """A proxy that frames by Content-Length would forward the GET below as part of the body; a server that
    frames by Transfer-Encoding would then answer it as a second request (request smuggling)."""
    body = b"0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the smuggled request is never answered
    response_head, _, response_body = answer.partition(b"\r\n\r\n")
    assert response_head.startswith(b"HTTP/1.1 400") and b"connection: close" in response_head.lower()
    error = json.loads(response_body)
    assert error["error"] == "BadRequestError"
    assert "both Content-Length and Transfer-Encoding" in error["message"]


@pytest.mark.slow
def test_a_trailing_slash_is_not_found_never_a_redirect_to_the_client_s_host(port: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Host": "attacker.example", "Content-Type": "image/jpeg"}
        conn.request("POST", "/invocations/", body=ordinary_jpeg(), headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 404 and response.getheader("location") is None


@pytest.mark.slow
def test_topk_in_arabic_indic_digits_is_400(port: int):
    answer = invoke(port, ordinary_jpeg(), "image/jpeg", query="?topk=%D9%A3")  # topk=٣
    assert answer.status == 400 and "ASCII digits" in answer.json()["message"], answer.body


@pytest.mark.parametrize("value", ["\u0663", "\uff13", "+3", "3_0", " 3", "0", "-1", "3.0", "1" * 10])
def test_topk_is_ascii_digits_only(value: str):
    with pytest.raises(BadRequestError, match="ASCII digits"):
        parse_output_options(None, {"topk": value})


def test_topk_in_ascii_digits_is_read_from_query_or_accept():
    assert parse_output_options(None, {"topk": "12"}).topk == 12
    assert parse_output_options("application/json; topk=2", None).topk == 2


def test_idle_socket_helpers_see_what_the_peer_did():
    """still_open tells a socket the peer closed from one it holds (the idle-socket test relies on it)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with idle_sockets(port, 2) as sockets:
            accepted = [listener.accept()[0] for _ in sockets]
            assert still_open(sockets) == 2
            accepted[0].close()
            assert open_sockets_settle_at_most(sockets, 1) == 1
            accepted[1].close()
