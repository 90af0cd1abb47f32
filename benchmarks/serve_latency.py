"""Serving speed of ResNet50 at 224 px (133 classes) on this machine; prints JSON.

1. Batch-1 latency, in process, request bytes to JSON answer: a plain handler (full PIL decode,
   eager fp32 NCHW network, one request at a time) against ours (dogbreed.serving.handler: JPEG draft
   decoding as evaluation does, BatchNorm folded into convolutions, channels_last). Rounds alternate.
2. Throughput over HTTP against the local server (serve/deploy.py): 16 concurrent clients (dynamic batching)
   against one request at a time. Rounds alternate.

    python benchmarks/serve_latency.py --photos <folder of photos> [--rounds 3] [--requests 160]
    python benchmarks/serve_latency.py --optimize bf16         # ours in bfloat16 (server.optimize=bf16)

The photos are read where they are, never copied. The weights are random (the speed does not depend on them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from load_test import load_images, local_server, percentiles, rss_mb, run_load  # noqa: E402

from dogbreed.export import export_model  # noqa: E402
from dogbreed.network import build_network  # noqa: E402
from dogbreed.preprocessing import Preprocessing, preprocessing_for  # noqa: E402
from dogbreed.serving import handler  # noqa: E402


class SeedShapedHandler:
    """A plain handler: PIL decode of the whole image, eager fp32 NCHW, one image per call."""

    def __init__(self, model_dir: Path):
        config = json.loads((model_dir / "model.json").read_text())
        self.net = build_network(config["arch"], config["num_classes"], None, config["head_hidden"])
        self.net.load_state_dict(torch.load(model_dir / "weights.pt", weights_only=True))
        self.net.eval()
        self.transform = Preprocessing.from_dict(config["preprocessing"]).eval_transform()

    def __call__(self, body: bytes) -> str:
        image = Image.open(io.BytesIO(body)).convert("RGB")
        with torch.no_grad():
            probs = torch.softmax(self.net(self.transform(image).unsqueeze(0)), dim=1)[0]
        return json.dumps({"probabilities": probs.tolist()})


def ours(engine):
    def answer(body: bytes) -> str:
        images = handler.input_fn(body, "image/jpeg")
        return handler.output_fn(handler.predict_fn(images, engine), "application/json")[0]

    return answer


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="folder of .jpg/.png photos, read in place")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over all photos (latency)")
    parser.add_argument("--requests", type=int, default=160, help="requests per throughput round")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--optimize", default="fuse", choices=["none", "fuse", "bf16"], help="ours")
    args = parser.parse_args()
    photos = [body for body, _ in load_images(args.photos)]
    report: dict = {
        "machine": machine(),
        "photos": len(photos),
        "model": "resnet50, 224 px, 133 classes",
        "optimize": args.optimize,
    }

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        names = [f"{i:03d}.Breed_{i}" for i in range(1, 134)]
        export_model(
            build_network("resnet50", 133),
            model_dir,
            arch="resnet50",
            class_names=names,
            preprocessing=preprocessing_for("resnet50", 224),
        )

        os.environ.pop("DOGBREED_THREADS", None)
        os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = "1"  # one worker: all CPUs for it, like the server
        os.environ["DOGBREED_OPTIMIZE"] = args.optimize
        handlers = {
            "seed_shape": SeedShapedHandler(model_dir),
            "ours": ours(handler.model_fn(str(model_dir))),
        }
        latencies: dict[str, list[float]] = {name: [] for name in handlers}
        for answer in handlers.values():  # warm-up
            answer(photos[0])
        for _ in range(args.rounds):
            for name, answer in handlers.items():
                for body in photos:
                    start = time.perf_counter()
                    answer(body)
                    latencies[name].append(time.perf_counter() - start)
        batch1 = {name: percentiles(values) for name, values in latencies.items()}
        report["batch1_latency_ms"] = batch1
        report["batch1_p50_speedup"] = round(batch1["seed_shape"]["p50"] / batch1["ours"]["p50"], 2)
        del handlers

        images = load_images(args.photos)
        with local_server(model_dir, [f"server.optimize={args.optimize}"]) as (port, pid):
            rss_before = rss_mb(pid)
            run_load("127.0.0.1", port, images, 16, 16)  # warm-up
            runs: dict[str, list[dict]] = {"one_at_a_time": [], "concurrent_16": []}
            for _ in range(args.throughput_rounds):
                runs["one_at_a_time"].append(run_load("127.0.0.1", port, images, args.requests, 1))
                runs["concurrent_16"].append(run_load("127.0.0.1", port, images, args.requests, 16))
            rss_after = rss_mb(pid)
        throughput = {
            name: {
                "images_per_s": round(statistics.median(r["images_per_s"] for r in results), 2),
                "latency_ms_p50": round(statistics.median(r["latency_ms"]["p50"] for r in results), 1),
                "latency_ms_p99": round(statistics.median(r["latency_ms"]["p99"] for r in results), 1),
                "errors": sum(r["errors"] for r in results),
            }
            for name, results in runs.items()
        }
        report["http_throughput"] = throughput
        report["throughput_speedup"] = round(
            throughput["concurrent_16"]["images_per_s"] / throughput["one_at_a_time"]["images_per_s"], 2
        )
        report["seed_shape_sequential_images_per_s"] = round(1000 / batch1["seed_shape"]["mean"], 2)
        report["server_rss_mb"] = {"before": rss_before, "after": rss_after}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
