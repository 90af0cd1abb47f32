"""Load test: N requests at concurrency C against a server with SageMaker's contract; prints JSON.

    python benchmarks/load_test.py --model-dir runs/train/<run>/model --images DIR [-n 200 -c 16]
    python benchmarks/load_test.py --endpoint http://127.0.0.1:8080 --images DIR

With --model-dir it starts serve/deploy.py itself on a free port and reports the server's resident memory
(VmRSS) before and after the load; with --endpoint it loads a running server. Reports latency
percentiles, images/s, errors by status and the batch sizes the server ran (GET /stats).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def load_images(folder: str | Path) -> list[tuple[bytes, str]]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no .jpg/.jpeg/.png images under {folder}")
    return [(p.read_bytes(), "image/png" if p.suffix.lower() == ".png" else "image/jpeg") for p in paths]


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


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def get_json(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else {"status": response.status}
    finally:
        conn.close()


def run_load(host: str, port: int, images: list[tuple[bytes, str]], requests: int, concurrency: int) -> dict:
    """Each of `concurrency` clients keeps one connection and sends its share of requests back to back."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            while (i := next(counter)) < requests:
                body, content_type = images[i % len(images)]
                start = time.perf_counter()
                try:
                    conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
                    response = conn.getresponse()
                    response.read()
                    status = str(response.status)
                except OSError as exc:
                    status = type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=300)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    ok = statuses.get("200", 0)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "images_per_s": round(ok / wall, 2),
        "errors": requests - ok,
        "statuses": statuses,
        "latency_ms": percentiles(latencies),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(model_dir: str | Path, overrides: list[str] = (), log: Path | None = None):
    """serve/deploy.py in a subprocess; yields (port, pid) once /ping answers 200."""
    port = free_port()
    out = open(log or os.devnull, "w")  # noqa: SIM115 - closed below
    cmd = [
        sys.executable, str(ROOT / "serve" / "deploy.py"), f"model_dir={model_dir}", f"server.port={port}",
        "server.log_level=warning", "hydra.run.dir=/tmp/dogbreed-load-test", "hydra.output_subdir=null",
        *overrides,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}; see {log or 'its log'}")
            try:
                if get_json("127.0.0.1", port, "/ping").get("status") == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /ping within 300 s")
            time.sleep(0.1)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)
        out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", help="start serve/deploy.py with this exported model")
    target.add_argument("--endpoint", help="URL of a running server")
    parser.add_argument("--images", required=True, help="folder of .jpg/.png files, sent in turn")
    parser.add_argument("-n", "--requests", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("overrides", nargs="*", help="deploy config overrides, e.g. server.max_batch_size=8")
    args = parser.parse_args()
    images = load_images(args.images)

    def measure(host: str, port: int, pid: int | None) -> dict:
        before = rss_mb(pid)
        result = run_load(host, port, images, args.requests, args.concurrency)
        return {**result, "server_rss_mb_before": before, "server_rss_mb_after": rss_mb(pid),
                "server_stats": get_json(host, port, "/stats")}  # fmt: skip

    if args.endpoint:
        url = urlparse(args.endpoint)
        report = measure(url.hostname or "127.0.0.1", url.port or 80, None)
    else:
        with local_server(args.model_dir, args.overrides) as (port, pid):
            report = measure("127.0.0.1", port, pid)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
