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
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hostile_images import many_scan_jpeg, ordinary_jpeg, rgba_png_request  # noqa: E402
from tests.http_client import (  # noqa: E402
    HOST,
    allow_open_files,
    get_json,
    idle_sockets,
    local_server,
    post,
    still_open,
    timed_get,
    tree_pss_mb,
    wait_until_busy,
)
from tests.load_mix import percentiles  # noqa: E402


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
