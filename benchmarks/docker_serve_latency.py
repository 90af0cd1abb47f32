"""Serve latency in the image's container against the local server, same model, same settings; prints JSON.

`serve` runs in the container built by docker/build.sh (published on 127.0.0.1, so each request also crosses
Docker's port proxy, as on a host that runs the image) and serve/deploy.py runs here; both load the same
model folder with the same server settings. One request at a time, rounds alternating between the two, after
a warm-up: p50/p95/mean of request bytes to JSON answer, and each side's engine.

    python benchmarks/docker_serve_latency.py --model-dir runs/train/<run>/model [--images DIR]
        [--requests 200] [--rounds 3] [--image dogbreed:latest]

Without --images, 16 generated 500x375 JPEGs are sent (the speed does not depend on what they show).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from dogbreed.tracking.manifest import cpu_name  # noqa: E402
from tests.docker_support import built_image, mount, started_container  # noqa: E402
from tests.http_client import free_port, local_server  # noqa: E402
from tests.images import gradient, jpeg_bytes  # noqa: E402
from tests.serving_support import invoke, request  # noqa: E402

SERVER = ["server.threads=2", "server.log_level=warning"]


def images(folder: str | None) -> list[bytes]:
    if folder is None:
        return [jpeg_bytes(gradient((500, 375)).rotate(i * 20)) for i in range(16)]
    return [p.read_bytes() for p in sorted(Path(folder).rglob("*.jpg"))[:64]]


def wait_ready(port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/ping").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)  # polling interval; readiness is the /ping answer
    raise TimeoutError("no /ping answer")


def timed(port: int, bodies: list[bytes], count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        answer = invoke(port, bodies[i % len(bodies)], "image/jpeg")
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status == 200, answer.body
    return times


def summary(times: list[float], engine: str) -> dict:
    ordered = sorted(times)
    return {
        "engine": engine,
        "requests": len(times),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--images")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", help="an image tag (default: what docker/build.sh builds)")
    args = parser.parse_args()
    model_dir = Path(args.model_dir).resolve()
    tag = args.image or built_image()
    bodies = images(args.images)
    port = free_port()
    options = ["-p", f"127.0.0.1:{port}:8080", *mount(model_dir, "/opt/ml/model", read_only=True)]
    times: dict[str, list[float]] = {"container": [], "local": []}
    with tempfile.TemporaryDirectory() as run_dir, started_container(tag, ["serve", *SERVER], options):
        with local_server(model_dir, SERVER, run_dir=run_dir) as (local, _):
            wait_ready(port)
            ports = {"container": port, "local": local}
            engines = {side: request(p, "GET", "/stats").json()["engine"] for side, p in ports.items()}
            for p in ports.values():
                timed(p, bodies, 20)  # warm-up
            per_round = args.requests // args.rounds
            for _ in range(args.rounds):
                for side, p in ports.items():
                    times[side] += timed(p, bodies, per_round)
    print(
        json.dumps(
            {
                "image": tag,
                "model_dir": str(model_dir),
                "server": SERVER,
                "cpu": cpu_name(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                **{side: summary(t, engines[side]) for side, t in times.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
