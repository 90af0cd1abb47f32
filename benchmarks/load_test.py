"""Load test: N requests at concurrency C against a server with SageMaker's contract; prints JSON.

    python benchmarks/load_test.py --model-dir runs/train/<run>/model --images DIR [-n 200 -c 16]
    python benchmarks/load_test.py --model-dir ... --images DIR -n 2000 -c 16 --bad-fraction 0.25
    python benchmarks/load_test.py --endpoint http://127.0.0.1:8080 --images DIR

With --model-dir it starts serve/deploy.py itself on a free port and reports the server's resident memory
(VmRSS) after a warm-up (--warmup requests of the same mix) and after the load; with --endpoint it loads a
running server. Reports latency percentiles of the good requests, images/s, statuses and the batch sizes
the server ran (GET /stats).

--bad-fraction F makes that share of the requests bad ones, the kinds of BAD_KINDS in turn: garbage bytes,
a good image under a wrong content type, an empty body, a 50 MB body, a decompression-bomb PNG, thin and
wide PNGs (1 x 30,000, 30,000 x 1, 1 x 39M), a request whose 32 images together pass the pixel budget, JSON
nested 100,000 deep, a 5,000-digit JSON integer, a 5 MB JSON key, and a JPEG with a corrupt EXIF block
(which must be answered 200); --slow-clients connections meanwhile stop sending their bodies, and a probe
times GET /ping throughout. `by_kind` says what came back for each kind, and `checks` whether every bad
request got its 4xx with a short JSON message, no request a 5xx, the slow clients a 408, /ping under a
second throughout and 200 afterwards, and memory after the load within 10% of memory after the warm-up.
The exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the request builders and clients the tests use too
from tests.http_client import get_json, local_server, ping_status, rss_mb  # noqa: E402
from tests.load_mix import checks, load_images, run_load  # noqa: E402

# Each bad kind and the status a correct server answers it with (with the default limits of deploy.yaml).


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", help="start serve/deploy.py with this exported model")
    target.add_argument("--endpoint", help="URL of a running server")
    parser.add_argument("--images", required=True, help="folder of .jpg/.png files, sent in turn")
    parser.add_argument("-n", "--requests", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--bad-fraction", type=float, default=0.0, help="share of bad requests, e.g. 0.25")
    parser.add_argument(
        "--slow-clients",
        type=int,
        default=None,
        help="connections that stop sending their body (default: 4 with --bad-fraction, else 0); each "
        "waits for the server's body timeout (server.body_timeout_s)",
    )
    # The server's memory settles once every batch size and request kind has been through it (allocator
    # arenas, oneDNN's per-shape kernels): 64 requests measured +10.6 % afterwards, 400 requests +0.7 %.
    parser.add_argument(
        "--warmup", type=int, default=None, help="requests before the load (default: n/5, at least 64)"
    )
    parser.add_argument("overrides", nargs="*", help="deploy config overrides, e.g. server.max_batch_size=8")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = max(64, args.requests // 5)
    if args.slow_clients is None:
        args.slow_clients = 4 if args.bad_fraction else 0
    images = load_images(args.images)

    def measure(host: str, port: int, pid: int | None) -> dict:
        if args.warmup:
            run_load(host, port, images, args.warmup, args.concurrency, args.bad_fraction)
        warm = rss_mb(pid)
        report = run_load(
            host, port, images, args.requests, args.concurrency, args.bad_fraction, args.slow_clients
        )
        after = rss_mb(pid)
        report.update(
            ping_after=ping_status(host, port),
            server_rss_mb_after_warmup=warm,
            server_rss_mb_after=after,
            rss_ratio=round(after / warm, 3) if warm and after else None,
            server_stats=get_json(host, port, "/stats"),
        )
        report["checks"] = checks(report)
        return report

    if args.endpoint:
        url = urlparse(args.endpoint)
        report = measure(url.hostname or "127.0.0.1", url.port or 80, None)
    else:
        with local_server(args.model_dir, args.overrides) as (port, pid):
            report = measure("127.0.0.1", port, pid)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["checks"]["ok"] else 1)


if __name__ == "__main__":
    main()
