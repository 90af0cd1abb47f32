"""Latency of a job-trained model on a SageMaker endpoint, network isolated, torch against the optimised
engine; prints JSON.

1. The model: a training job's model.tar.gz (`--archive`), or, without one, a job replayed here as SageMaker
   runs it: launched through the SDK against a local AWS fake (moto), then the training toolkit with the
   PyTorch container's framework module in a Python like that container's (torch, no ONNX runtime, no
   dogbreed), which pip-installs the source bundle's requirements.txt from wheels of this environment's
   runtimes, no index. ResNet50 at 224 px from random weights, backbone frozen, one epoch on generated
   images (the speed does not depend on the weights).
2. The endpoint: the archive extracted where the PyTorch inference container puts it, in another such
   Python; the inference toolkit's own install of code/requirements.txt with no package index at all (the
   runtime can only come from code/wheels/), then the toolkit's handler service (tests/
   sagemaker_handler_driver.py) answers each photo, DOGBREED_ENGINE=torch and auto in alternating rounds,
   one process per round, the endpoint's default threads (CPUs / model server workers) unless --threads.
   Timed per request: the toolkit's handle(), from request bytes to the JSON answer (TorchServe's HTTP
   front end not included).

    ONEDNN_MAX_CPU_ISA=AVX512_CORE python benchmarks/endpoint_latency.py [--archive model.tar.gz]
        [--photos DIR] [--rounds 3] [--keep DIR]

Without --photos: 40 generated 500x375 JPEGs (smooth shapes and noise, quality 90).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.container_packages import (  # noqa: E402
    RUNTIME_DISTRIBUTIONS,
    install_model_requirements,
    no_index_environment,
    wheels_of_installed,
)
from tests.sagemaker_replay import extract, make_container_python, run_job  # noqa: E402
from tests.serving_support import through_sagemaker_handler  # noqa: E402

JOB = [
    "backend=sagemaker",
    "backend.role=arn:aws:iam::123456789012:role/dogbreed-benchmark",
    "backend.bucket=dogbreed-benchmark",
    "backend.instance_type=ml.m5.large",
    "model=resnet50",
    "model.weights=null",
    "model.freeze=all",
    "model.allow_random_frozen_backbone=true",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "onnx.calibration_size=48",
    "onnx.parity_size=24",
    # Random weights answer with flat probabilities, where INT8 flips top-1s a trained network keeps.
    "onnx.parity.int8.max_prob_diff=0.5",
    "onnx.parity.int8.min_top1_agreement=0.5",
]


def photo_like_jpegs(folder: Path, count: int = 40, seed: int = 0) -> list[Path]:
    """`count` 500x375 JPEGs: smooth colour fields with noise, about the bytes of a photo of that size."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for i in range(count):
        a, b, c = rng.uniform(0.005, 0.03, 3)
        field = np.stack([np.sin(a * x + i), np.cos(b * y - i), np.sin(c * (x + y))], axis=-1)
        pixels = (field * 80 + 128 + rng.normal(0, 12, field.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"photo{i:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def replayed_job_archive(work: Path) -> Path:
    """model.tar.gz of a ResNet50 training job replayed as SageMaker runs it (see the module's text)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from dogbreed.data.embedded import generate_dataset
    from dogbreed.sagemaker.training_job import launch_training
    from tests.conftest import compose_config

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        PIP_FIND_LINKS=str(wheels_of_installed(RUNTIME_WHEELS, work / "local-wheels")),
    )
    try:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="dogbreed-benchmark")
        counts = {"train": 32, "valid": 8, "test": 8}
        data = generate_dataset(work / "data", 3, counts, image_size=256, seed=0)
        overrides = [*JOB, f"data.root={data}"]
        described = launch_training(compose_config(work / "launch", overrides), overrides)
        job = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(
            TrainingJobName=described["TrainingJobName"]
        )
        python = make_container_python(work / "job-venv", without=RUNTIME_DISTRIBUTIONS)
        done = run_job(job, s3, python, work / "job", timeout=3600)
        if done.returncode != 0:
            raise SystemExit((done.stdout + done.stderr)[-4000:])
    finally:
        server.stop()
    model = work / "job" / "opt_ml" / "model"
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # as SageMaker uploads /opt/ml/model
        for path in sorted(model.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model).as_posix())
    return archive


# The runtimes and what `pip download` resolves with them (the job fetches its model's wheels so).
RUNTIME_WHEELS = (*RUNTIME_DISTRIBUTIONS, "openvino-telemetry", "numpy", "packaging")


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def endpoint(archive: Path, photos: list[Path], rounds: int, threads: int | None, work: Path) -> dict:
    """Start the archive as the container does (no index) and time each engine through the handler."""
    base = work / "endpoint"
    model_dir = extract(archive, base / "model")
    python = make_container_python(work / "serve-venv", without=RUNTIME_DISTRIBUTIONS)
    environment = no_index_environment(base)
    started = time.perf_counter()
    done = install_model_requirements(python, environment)
    if done.returncode != 0:
        raise SystemExit(f"the endpoint would not start: {(done.stdout + done.stderr)[-3000:]}")
    install_s = time.perf_counter() - started
    if threads:
        environment["DOGBREED_THREADS"] = str(threads)
    requests = [{"body_file": str(p), "content_type": "image/jpeg", "accept": None} for p in photos]
    times: dict[str, list[float]] = {"torch": [], "auto": []}
    names = {}
    for _ in range(rounds):
        for engine in times:
            report = through_sagemaker_handler(
                model_dir, requests, work, {**environment, "DOGBREED_ENGINE": engine}, python=python
            )
            assert all(r["status"] == 200 for r in report["results"]), report["results"][0]
            times[engine] += [r["ms"] for r in report["results"]]
            names[engine] = report["engine"]
    wheels = sorted((model_dir / "code" / "wheels").glob("*.whl")) if (model_dir / "code").is_dir() else []
    return {
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
        "wheels": {w.name: round(w.stat().st_size / 2**20, 1) for w in wheels},
        "requirements_install_s": round(install_s, 1),
        "engines": {engine: {"engine": names[engine], **summary(t)} for engine, t in times.items()},
        "speed_up_p50": round(statistics.median(times["torch"]) / statistics.median(times["auto"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, help="a job's model.tar.gz (default: replay a job here)")
    parser.add_argument("--photos", type=Path, help="a folder of JPEGs (default: 40 generated 500x375)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="DOGBREED_THREADS (default: the endpoint's own)")
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it (the archive, venvs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dogbreed-endpoint-") as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        photos = sorted(args.photos.glob("*.jpg")) if args.photos else photo_like_jpegs(work / "photos")
        started = time.perf_counter()
        archive = args.archive.resolve() if args.archive else replayed_job_archive(work)
        job_s = None if args.archive else round(time.perf_counter() - started, 1)
        result = endpoint(archive, photos, args.rounds, args.threads, work)
    result.update(
        photos=len(photos),
        rounds=args.rounds,
        replayed_job_s=job_s,
        onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"),
        cpus=os.cpu_count(),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
