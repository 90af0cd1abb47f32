"""Serving speed of ResNet50 at 224 px on this machine; prints JSON.

1. Batch-1 latency, request bytes to JSON answer: a plain handler (PIL decode of the whole image,
   torchvision Resize(256)/CenterCrop(224), eager fp32 NCHW network, softmax, one request at a time; in a
   process of its own, so that no runtime's threads run beside it) against ours, in this process
   (dogbreed.serving.handler with DOGBREED_ENGINE: JPEG draft decoding as evaluation does, then the engine:
   an ONNX runtime on the model's optimised artifact, or torch with BatchNorm folded into convolutions,
   channels_last). Rounds alternate. `network_ms` times the network alone on a preprocessed batch of one,
   and `achieved_gop_per_s` is 2 x the network's multiply-accumulates over that time.
2. Throughput over HTTP against the local server (serve/deploy.py): 16 concurrent clients (dynamic batching)
   against one request at a time. Rounds alternate.

    python benchmarks/serve_latency.py --photos DIR [--rounds 3] [--requests 160]
    python benchmarks/serve_latency.py --model-dir runs/train/<run>/model --engine openvino
    python benchmarks/serve_latency.py --engine torch --optimize bf16   # torch in bfloat16

Without --model-dir the weights are random, 133 classes (the speed does not depend on them) and only the
torch engine can run (there is no artifact). The photos are read where they are, never copied.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
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

from dogbreed.data.preprocessing import Preprocessing, preprocessing_for  # noqa: E402
from dogbreed.model.network import build_network  # noqa: E402
from dogbreed.modeldir.reader import read_model_description  # noqa: E402
from dogbreed.modeldir.writer import export_model  # noqa: E402
from dogbreed.serving import handler  # noqa: E402
from dogbreed.tracking.manifest import cpu_name  # noqa: E402


class PlainHandler:
    """A plain handler: PIL decode of the whole image, Resize(256)/CenterCrop(224), eager fp32 NCHW,
    softmax, one image per call."""

    def __init__(self, model_dir: Path):
        from torchvision import transforms

        config = json.loads((model_dir / "model.json").read_text())
        self.net = build_network(config["arch"], config["num_classes"], None, config["head_hidden"])
        self.net.load_state_dict(torch.load(model_dir / "weights.pt", weights_only=True))
        self.net.eval()
        pre = Preprocessing.from_dict(config["preprocessing"])
        self.transform = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(pre.mean, pre.std),
            ]
        )

    def __call__(self, body: bytes) -> str:
        image = Image.open(io.BytesIO(body)).convert("RGB")
        with torch.no_grad():
            probs = torch.softmax(self.net(self.transform(image).unsqueeze(0)), dim=1)[0]
        return json.dumps({"probabilities": probs.tolist()})


def plain_handler_process(conn, model_dir: str, threads: int) -> None:
    """The plain handler in a process of its own, as it would run alone: no runtime threads beside it.
    Receives request bodies, answers the seconds each took; None ends it."""
    torch.set_num_threads(threads)
    answer = PlainHandler(Path(model_dir))
    while (body := conn.recv()) is not None:
        start = time.perf_counter()
        answer(body)
        conn.send(time.perf_counter() - start)


def ours(engine):
    def answer(body: bytes) -> str:
        images = handler.input_fn(body, "image/jpeg")
        return handler.output_fn(handler.predict_fn(images, engine), "application/json")[0]

    return answer


def multiply_accumulates(model_dir: Path) -> int:
    """Multiply-accumulates of one forward pass at the model's crop size (convolutions and linear layers)."""
    config = read_model_description(model_dir).config
    net = build_network(config["arch"], config["num_classes"], None, config["head_hidden"]).eval()
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    for module in net.modules():
        module.register_forward_hook(count)
    size = config["preprocessing"]["crop_size"]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    return total


def network_latency_ms(engine, size: int, repeats: int) -> dict:
    """The engine's network alone on one preprocessed image (no decoding, no JSON)."""
    batch = torch.randn(1, 3, size, size)
    for _ in range(3):
        engine.probabilities(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.probabilities(batch)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def machine() -> dict:
    cpu = cpu_name()  # the manifest's own reading of /proc/cpuinfo
    return {
        "cpu": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        # oneDNN's cap, which torch and OpenVINO's CPU plugin both honour (ONNX Runtime's kernels have none)
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="a folder of photos (JPEG/PNG), read where they are")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over all photos (latency)")
    parser.add_argument("--requests", type=int, default=160, help="requests per throughput round")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--optimize", default="fuse", choices=["none", "fuse", "bf16"], help="ours, torch")
    parser.add_argument("--engine", default="auto", choices=["auto", "openvino", "onnxruntime", "torch"])
    parser.add_argument("--model-dir", help="an exported model (with its artifact); default: random weights")
    parser.add_argument("--skip-http", action="store_true", help="batch-1 latency only")
    args = parser.parse_args()
    photos = [body for body, _ in load_images(args.photos)]
    report: dict = {
        "machine": machine(),
        "photos": len(photos),
        "engine_asked": args.engine,
        "optimize": args.optimize,
    }

    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir:
            model_dir = Path(args.model_dir)
        else:
            model_dir = Path(tmp) / "model"
            names = [f"{i:03d}.Breed_{i}" for i in range(1, 134)]
            export_model(
                build_network("resnet50", 133),
                model_dir,
                arch="resnet50",
                class_names=names,
                preprocessing=preprocessing_for("resnet50", 224),
            )
        config = read_model_description(model_dir).config
        report["model"] = f"{config['arch']}, {config['preprocessing']['crop_size']} px, " + (
            f"{config['num_classes']} classes"
        )

        os.environ.pop("DOGBREED_THREADS", None)
        os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = "1"  # one worker: all CPUs for it, like the server
        os.environ["DOGBREED_OPTIMIZE"] = args.optimize
        os.environ["DOGBREED_ENGINE"] = args.engine
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        plain = context.Process(
            target=plain_handler_process, args=(child_conn, str(model_dir), len(os.sched_getaffinity(0)))
        )
        plain.start()
        engine = handler.model_fn(str(model_dir))
        report["engine"] = engine.name
        answer_ours = ours(engine)
        latencies: dict[str, list[float]] = {"plain_handler": [], "ours": []}
        conn.send(photos[0])  # warm-up
        conn.recv()
        answer_ours(photos[0])
        for _ in range(args.rounds):
            for body in photos:
                conn.send(body)
                latencies["plain_handler"].append(conn.recv())
            for body in photos:
                start = time.perf_counter()
                answer_ours(body)
                latencies["ours"].append(time.perf_counter() - start)
        conn.send(None)
        plain.join()
        batch1 = {name: percentiles(values) for name, values in latencies.items()}
        report["batch1_latency_ms"] = batch1
        report["batch1_p50_speedup"] = round(batch1["plain_handler"]["p50"] / batch1["ours"]["p50"], 2)
        size = config["preprocessing"]["crop_size"]
        network = network_latency_ms(engine, size, 10 * args.rounds)
        macs = multiply_accumulates(model_dir)
        report["network_ms"] = network
        report["network_gmac"] = round(macs / 1e9, 3)
        report["achieved_gop_per_s"] = round(2 * macs / 1e9 / (network["p50"] / 1000), 1)
        report["plain_handler_sequential_images_per_s"] = round(1000 / batch1["plain_handler"]["mean"], 2)
        del engine
        if args.skip_http:
            report["machine"]["load_average_at_end"] = os.getloadavg()
            print(json.dumps(report, indent=2))
            return

        images = load_images(args.photos)
        overrides = [f"server.optimize={args.optimize}", f"server.engine={args.engine}"]
        with local_server(model_dir, overrides) as (port, pid):
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
        report["concurrent_16_vs_plain_sequential"] = round(
            throughput["concurrent_16"]["images_per_s"] / report["plain_handler_sequential_images_per_s"], 2
        )
        report["server_rss_mb"] = {"before": rss_before, "after": rss_after}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
