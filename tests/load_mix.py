"""The load test's request mix (good images and every kind of bad request), the concurrent sender, and
the checks of its report; benchmarks/load_test.py runs it at scale, tests/test_serving_under_load.py small."""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import math
import random
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.hostile_images import (  # noqa: E402
    black_png,
    decompression_bomb_png,
    deep_json,
    huge_int_json,
    huge_key_json,
    jpeg_with_corrupt_exif,
    pixel_budget_json,
)
from tests.http_client import ping_status  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


GOOD = "good"


BAD_KINDS = {
    "garbage_bytes": 400,
    "wrong_content_type": 415,
    "empty_body": 400,
    "huge_body_50mb": 413,
    "decompression_bomb_png": 413,
    "thin_png_1x30000": 400,  # the resize to the model's short side would make it gigabytes
    "wide_png_30000x1": 400,
    "thin_png_1x39m": 400,
    "request_over_pixel_budget": 413,  # 32 images of 39.7 MP: each within limits, together not
    "deep_json": 400,
    "huge_int_json": 400,
    "huge_json_key_5mb": 400,  # and the error must not replay the key
    "corrupt_exif_jpeg": 200,  # a good picture with a broken EXIF block: answered like any other
}


ERROR_BODY_LIMIT = 1024  # bytes: an error answer names the fault, it never replays the request


MEMORY_GROWTH_LIMIT = 1.10  # RSS after the load / RSS after the warm-up


@dataclass(frozen=True)
class Payload:
    kind: str  # GOOD or one of BAD_KINDS
    body: bytes
    content_type: str
    expected: int  # the status a correct server answers


@dataclass(frozen=True)
class Outcome:
    kind: str
    expected: int
    status: int | str  # the HTTP status, or the name of the exception that ended the request
    message: str | None  # the "message" of a JSON error answer
    seconds: float
    body_bytes: int = 0


def load_images(folder: str | Path) -> list[tuple[bytes, str]]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no .jpg/.jpeg/.png images under {folder}")
    return [(p.read_bytes(), "image/png" if p.suffix.lower() == ".png" else "image/jpeg") for p in paths]


@functools.cache
def _zeros(size: int) -> bytes:
    return bytes(size)


def bad_payloads(good_image: bytes, huge_bytes: int = 50 * 2**20) -> list[Payload]:
    """One payload of each of BAD_KINDS; `good_image` is the image sent under a wrong content type."""
    bodies = {
        "garbage_bytes": (random.Random(0).randbytes(4096), "image/jpeg"),
        "wrong_content_type": (good_image, "text/plain"),
        "empty_body": (b"", "image/jpeg"),
        "huge_body_50mb": (_zeros(huge_bytes), "image/jpeg"),
        "decompression_bomb_png": (decompression_bomb_png(), "image/png"),
        "thin_png_1x30000": (black_png(1, 30_000), "image/png"),
        "wide_png_30000x1": (black_png(30_000, 1), "image/png"),
        "thin_png_1x39m": (black_png(1, 39_000_000), "image/png"),
        "request_over_pixel_budget": (pixel_budget_json(), "application/json"),
        "deep_json": (deep_json(), "application/json"),
        "huge_int_json": (huge_int_json(), "application/json"),
        "huge_json_key_5mb": (huge_key_json(), "application/json"),
        "corrupt_exif_jpeg": (jpeg_with_corrupt_exif(), "image/jpeg"),
    }
    return [Payload(kind, *bodies[kind], expected) for kind, expected in BAD_KINDS.items()]


def request_plan(images: list[tuple[bytes, str]], requests: int, bad_fraction: float = 0.0) -> list[Payload]:
    """`requests` payloads: the images in turn, with a bad one spread evenly every 1/bad_fraction
    requests, the bad kinds in turn."""
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction={bad_fraction} must be between 0 and 1")
    bad = bad_payloads(images[0][0]) if bad_fraction else []
    plan: list[Payload] = []
    n_bad = 0
    for i in range(requests):
        if bad and math.floor((i + 1) * bad_fraction) > n_bad:
            plan.append(bad[n_bad % len(bad)])
            n_bad += 1
        else:
            body, content_type = images[(i - n_bad) % len(images)]
            plan.append(Payload(GOOD, body, content_type, 200))
    return plan


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {
        "p50": round(pick(0.50) * 1000, 2),
        "p90": round(pick(0.90) * 1000, 2),
        "p99": round(pick(0.99) * 1000, 2),
        "mean": round(statistics.fmean(ordered) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def _error_message(body: bytes) -> str | None:
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) and message else None


def send_all(host: str, port: int, plan: list[Payload], concurrency: int) -> tuple[list[Outcome], float]:
    """Each of `concurrency` clients keeps one connection and sends the next payload of `plan` back to
    back; returns every request's outcome and the wall time."""
    counter = itertools.count()
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            while (i := next(counter)) < len(plan):
                payload = plan[i]
                message = None
                start = time.perf_counter()
                try:
                    conn.request(
                        "POST",
                        "/invocations",
                        body=payload.body,
                        headers={"Content-Type": payload.content_type},
                    )
                    response = conn.getresponse()
                    body = response.read()
                    status: int | str = response.status
                    if status != 200:
                        message = _error_message(body)
                    if response.will_close:  # the server said Connection: close
                        conn.close()
                except OSError as exc:  # refused, reset, timed out: counted under the exception's name
                    status, body = type(exc).__name__, b""
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=300)
                elapsed = time.perf_counter() - start
                outcome = Outcome(payload.kind, payload.expected, status, message, elapsed, len(body))
                with lock:
                    outcomes.append(outcome)
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return outcomes, time.perf_counter() - start


def summarize(outcomes: list[Outcome], wall: float, concurrency: int) -> dict:
    """Statuses overall and per kind, latency of the good requests, and how many met expectations."""
    statuses: dict[str, int] = {}
    by_kind: dict[str, dict] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
        kind = by_kind.setdefault(
            o.kind, {"sent": 0, "expected": o.expected, "statuses": {}, "as_expected": 0, "with_message": 0}
        )
        kind["sent"] += 1
        kind["statuses"][str(o.status)] = kind["statuses"].get(str(o.status), 0) + 1
        kind["as_expected"] += o.status == o.expected
        kind["with_message"] += o.message is not None
    good = [o for o in outcomes if o.kind == GOOD]
    ok = sum(o.status == 200 for o in good)
    error_bodies = [o.body_bytes for o in outcomes if o.status != 200]
    return {
        "requests": len(outcomes),
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "images_per_s": round(ok / wall, 2),
        "errors": sum(o.status != o.expected for o in outcomes),
        "server_errors_5xx": sum(isinstance(o.status, int) and o.status >= 500 for o in outcomes),
        "statuses": statuses,
        "by_kind": by_kind,
        "latency_ms": percentiles([o.seconds for o in good]) if good else None,
        "largest_error_body_bytes": max(error_bodies, default=0),
    }


def slow_client(host: str, port: int, wait_s: float = 120.0) -> int | str:
    """Send headers and a tenth of the body announced, then nothing. A server with a body timeout answers
    408 and closes; one without holds the connection until `wait_s` ends the wait. The status, or why
    none came."""
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: load-test\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    answer = b""
    try:
        with socket.create_connection((host, port), timeout=wait_s) as sock:
            sock.sendall(head + bytes(10_000))
            while chunk := sock.recv(65536):  # b"" once the server closes
                answer += chunk
    except OSError as exc:
        if not answer:
            return type(exc).__name__
    status_line = answer.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else "no answer"


@contextmanager
def ping_probe(host: str, port: int, interval_s: float = 0.05):
    """Time GET /ping every `interval_s` while the block runs; yields the growing list of seconds."""
    stop = threading.Event()
    seconds: list[float] = []

    def probe() -> None:
        while not stop.wait(interval_s):  # the probe's pace, not synchronisation
            start = time.perf_counter()
            ping_status(host, port)
            seconds.append(time.perf_counter() - start)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield seconds
    finally:
        stop.set()
        thread.join()


def run_load(
    host: str,
    port: int,
    images: list[tuple[bytes, str]],
    requests: int,
    concurrency: int,
    bad_fraction: float = 0.0,
    slow_clients: int = 0,
) -> dict:
    """`requests` requests (a `bad_fraction` share of them bad) at `concurrency`, meanwhile `slow_clients`
    connections that stop sending and a /ping probe; the summary."""
    plan = request_plan(images, requests, bad_fraction)
    with ThreadPoolExecutor(max(1, slow_clients)) as slow_pool, ping_probe(host, port) as pings:
        slow = [slow_pool.submit(slow_client, host, port) for _ in range(slow_clients)]
        outcomes, wall = send_all(host, port, plan, concurrency)
        pings_during_load = list(pings)
        slow_statuses = [future.result() for future in slow]
    report = summarize(outcomes, wall, concurrency)
    report["ping_during_load_ms"] = percentiles(pings_during_load) if pings_during_load else None
    if slow_clients:
        report["slow_clients"] = {"sent": slow_clients, "statuses": slow_statuses}
    return report


def checks(report: dict) -> dict[str, bool]:
    """What the reliability issue asks of a server under a mixed load; `ok` when all hold."""
    kinds = report["by_kind"]
    result = {
        "no_5xx": report["server_errors_5xx"] == 0,
        "good_requests_200": all(k["as_expected"] == k["sent"] for name, k in kinds.items() if name == GOOD),
        "bad_requests_4xx_with_message": all(
            k["as_expected"] == k["with_message"] == k["sent"] and 400 <= k["expected"] < 500
            for name, k in kinds.items()
            if name != GOOD and k["expected"] != 200
        ),
        "odd_but_good_requests_200": all(
            k["as_expected"] == k["sent"]
            for name, k in kinds.items()
            if name != GOOD and k["expected"] == 200
        ),
        "error_bodies_short": report.get("largest_error_body_bytes", 0) < ERROR_BODY_LIMIT,
        "ping_after_200": report.get("ping_after") == 200,
    }
    if report.get("slow_clients"):
        result["slow_clients_408"] = all(s == 408 for s in report["slow_clients"]["statuses"])
    if report.get("ping_during_load_ms"):
        result["ping_p99_under_1s"] = report["ping_during_load_ms"]["p99"] < 1000
    if report.get("rss_ratio") is not None:
        result["memory_within_10pct_of_warm_up"] = report["rss_ratio"] <= MEMORY_GROWTH_LIMIT
    result["ok"] = all(result.values())
    return result
