"""Connection bounds of the local server: idle sockets and slow-to-decode requests; prints JSON.

    python benchmarks/connection_bounds.py --model-dir runs/train/<run>/model [deploy overrides ...]

Starts serve/deploy.py on a free port, then:
- for each count of --idle (150 and 1,000 by default), holds that many sockets open that send nothing,
  times 20 GET /ping and 5 POST /invocations of a 200x200 JPEG meanwhile, and counts the idle sockets the
  server has left open (at most server.max_connections) and the memory of the server and its workers
  (PSS: shared pages counted once);
- for each slow request, sends it and, once a preprocessing worker is busy with it, an ordinary request,
  and times both: a progressive JPEG of --jpeg-side pixels square and --jpeg-scans scans (by default
  13,000 and 1,000: it fits limits.max_pixels after draft reduction and decodes for many seconds), and a
  JSON request of 32 RGBA PNGs of 2,000 x 1,250 pixels (80 MP: within the default limits).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import resource
import socket
import struct
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.load_test import get_json, local_server, percentiles  # noqa: E402

HOST = "127.0.0.1"


def ordinary_jpeg(side: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (40, 160, 90)).save(buf, "JPEG")
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def _eob_runs(blocks: int) -> bytes:
    """Entropy-coded data of one AC scan that skips `blocks` blocks with end-of-band runs (EOBn symbols
    with 4-bit codes n, then n bits of run length), padded with ones and byte-stuffed."""
    bits: list[int] = []
    while blocks:
        n = min(blocks.bit_length() - 1, 14)
        run = min(blocks, (1 << (n + 1)) - 1)
        bits += [(n >> i) & 1 for i in range(3, -1, -1)]
        bits += [((run - (1 << n)) >> i) & 1 for i in range(n - 1, -1, -1)]
        blocks -= run
    bits += [1] * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        out.append(int("".join(map(str, bits[i : i + 8])), 2))
        if out[-1] == 0xFF:
            out.append(0)
    return bytes(out)


def many_scan_jpeg(width: int = 8000, height: int = 8000, scans: int = 1000) -> bytes:
    """A valid grayscale progressive JPEG with no DC scan and `scans` identical AC scans: a few bytes each,
    while the decoder walks every block of the image in each (issue: the CPU bomb)."""
    symbols = bytes(n << 4 for n in range(15))  # EOB0 .. EOB14
    counts = bytes([0, 0, 0, len(symbols)] + [0] * 12)  # all of them 4-bit codes
    head = [
        b"\xff\xd8",
        _segment(0xDB, b"\x00" + b"\x01" * 64),
        _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        _segment(0xC4, b"\x10" + counts + symbols),
    ]
    blocks = -(-width // 8) * -(-height // 8)
    scan = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + _eob_runs(blocks)
    return b"".join([*head, scan * scans, b"\xff\xd9"])


def rgba_png_request(images: int = 32, size: tuple[int, int] = (2000, 1250)) -> bytes:
    """A JSON request of `images` half-transparent RGBA PNGs: slow to decode per pixel (the alpha is
    composited on white), yet small to send."""
    w, h = size
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., 0] = (np.arange(w) % 256)[None, :]
    arr[..., 1] = (np.arange(h) % 256)[:, None]
    arr[..., 3] = 128
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, "PNG")
    one = base64.b64encode(buf.getvalue()).decode()
    return json.dumps({"images": [one] * images}).encode()


def post(port: int, body: bytes, content_type: str) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds) of POST /invocations on a connection of its own."""
    import http.client

    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        body = response.read()
        answer = json.loads(body) if response.getheader("content-type") == "application/json" else {}
        return response.status, answer, time.monotonic() - start
    finally:
        conn.close()


def timed_get(port: int, path: str) -> tuple[int, float]:
    import http.client

    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    finally:
        conn.close()


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and every process under it (its preprocessing workers and their
    fork server), in MB: shared pages counted once in all."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree = [pid]
    for parent in tree:
        tree += [child for child, of in parents.items() if of == parent]
    total_kb = 0
    for member in tree:
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return round(total_kb / 1024, 1)


def allow_open_files(count: int) -> None:
    """Raise this process's soft open-file limit to `count` if it is lower (the hard limit permitting)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


@contextmanager
def idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections to the server that send nothing."""
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection((HOST, port), timeout=10)) for _ in range(count)]


def still_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has not closed (a closed one reads as end of file at once)."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)  # with a timeout set, recv would wait for data first
        try:
            count += sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            count += 1  # nothing to read and no end of file: open
        except OSError:
            pass  # reset by the server
    return count


def wait_until_busy(port: int, timeout_s: float = 30.0) -> None:
    """Poll /stats until a preprocessing worker holds a request."""
    deadline = time.monotonic() + timeout_s
    while get_json(HOST, port, "/stats").get("preprocess_workers_busy", 0) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("no preprocessing worker became busy")
        time.sleep(0.01)  # polling interval; the condition is the server's own count


def slow_and_ordinary(port: int, slow: bytes, content_type: str) -> dict:
    """Send `slow`, then an ordinary JPEG while a worker decodes it; times and statuses of both."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, port, slow, content_type)
        wait_until_busy(port)
        ordinary_status, _, ordinary_s = post(port, ordinary_jpeg(), "image/jpeg")
        slow_status, slow_answer, slow_s = pending.result()
    return {
        "slow_status": slow_status,
        "slow_s": round(slow_s, 3),
        "slow_message": slow_answer.get("message"),
        "ordinary_status": ordinary_status,
        "ordinary_s": round(ordinary_s, 3),
    }


def idle_connections(port: int, pid: int, count: int) -> dict:
    allow_open_files(count + 256)
    with idle_sockets(port, count) as sockets:
        pings = [timed_get(port, "/ping") for _ in range(20)]
        invocations = [post(port, ordinary_jpeg(), "image/jpeg") for _ in range(5)]
        return {
            "idle_sockets": count,
            "server_pss_mb": tree_pss_mb(pid),
            "ping_statuses": sorted({status for status, _ in pings}),
            "ping_ms": percentiles([seconds for _, seconds in pings]),
            "invocation_statuses": sorted({status for status, _, _ in invocations}),
            "invocation_ms": percentiles([seconds for _, _, seconds in invocations]),
            "idle_sockets_left_open": still_open(sockets),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="start serve/deploy.py with this exported model")
    parser.add_argument("--idle", type=int, nargs="+", default=[150, 1000])
    parser.add_argument("--jpeg-side", type=int, default=13_000)
    parser.add_argument("--jpeg-scans", type=int, default=1_000)
    parser.add_argument(
        "overrides", nargs="*", help="deploy config overrides, e.g. limits.decode_timeout_s=2"
    )
    args = parser.parse_args()
    with local_server(args.model_dir, args.overrides) as (port, pid):
        report = {
            "overrides": args.overrides,
            "server_pss_mb_at_start": tree_pss_mb(pid),
            "idle": [idle_connections(port, pid, count) for count in args.idle],
            "many_scan_jpeg": slow_and_ordinary(
                port, many_scan_jpeg(args.jpeg_side, args.jpeg_side, args.jpeg_scans), "image/jpeg"
            ),
            "rgba_png_request": slow_and_ordinary(port, rgba_png_request(), "application/json"),
            "server_pss_mb_at_end": tree_pss_mb(pid),
            "stats": get_json(HOST, port, "/stats"),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
