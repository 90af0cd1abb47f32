"""Training throughput (images/s): dogbreed's Lightning step against a plain PyTorch loop (ImageFolder +
DataLoader without workers + loop, PIL decode, fp32 NCHW).

Same model, same data, same machine, runs alternated. Also measured, in the same run:
- `bare`: dogbreed's own model and loader in a hand-written loop, without Lightning: the difference to
  `dogbreed` is Lightning's overhead per step;
- `loader`: decode + augment images/s of one loader process (the data path alone), so it can be compared
  with the model's rate times the workers: where the loader is the bottleneck, the JSON says so;
- `synthetic` (--synthetic): forward + backward on random tensors already on the device, no loader: the
  ceiling a GPU run is compared against.
With --input-paths it measures the input paths instead (`input_path_grid`): CPU decode with 4 loader
workers and with every core, GPU decode (data.decode=gpu) with 4 workers, each with channels_last and
torch.compile on and off, as images/s and as a share of the network's own speed (the synthetic ceiling
with the same channels_last and compile settings). GPU-decode rows need a CUDA device: on a CPU they are
listed as skipped, with the reason.
Prints JSON.

    python benchmarks/train_throughput.py --freeze head --freeze all --steps 8 --repeats 2
    python benchmarks/train_throughput.py --photos <folder of JPEGs>   # real JPEGs, replicated
    python benchmarks/train_throughput.py --freeze all --batch 256 --steps 30 --synthetic   # on a GPU
    python benchmarks/train_throughput.py --input-paths --freeze all --batch 256 --steps 30 --warmup 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from dogbreed.data import DogBreedDataModule
from dogbreed.data.datamodule import default_num_workers
from dogbreed.model.classifier import BreedClassifier
from dogbreed.model.network import apply_freeze, build_network
from dogbreed.training.acceleration import (
    available_cpus,
    configure_backends,
    maybe_compile,
    resolve_precision,
)


def make_images(root: Path, photos: Path | None, classes: int, per_class: int) -> Path:
    """An ImageFolder of realistic JPEGs (500x375, like the dog-breed set) or replicated real photos."""
    sources = sorted(photos.glob("*.jpg")) if photos else []
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        for c in range(classes):
            folder = root / split / f"{c:03d}.Class_{c}"
            folder.mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                if sources:
                    shutil.copy(sources[(c * per_class + i) % len(sources)], folder / f"{i}.jpg")
                else:
                    # Smooth noise compresses like a photo, unlike white noise.
                    small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
                    Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(
                        folder / f"{i}.jpg", quality=90
                    )
    return root


class StepTimer(pl.Callback):
    """Wall time of the training batches after `warmup`, from the end of the last warm-up batch: each timed
    batch's data wait, transfer and on_after_batch_transfer (the GPU path's decoding) are inside it."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.images, self.start = max(1, warmup), 0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup - 1:
            synchronize(pl_module.device)  # the GPU's queued work belongs to the batches it came from
        if batch_idx == self.warmup - 1:
            self.start = time.perf_counter()
        elif batch_idx >= self.warmup:
            self.images += len(batch[1])
            self.seconds = time.perf_counter() - self.start


def dogbreed_parts(
    root: Path,
    freeze: str,
    batch: int,
    size: int,
    workers: int,
    compile_net: bool,
    decode: str = "cpu",
    channels_last: bool = True,
):
    dm = DogBreedDataModule(
        root, arch="resnet50", image_size=size, batch_size=batch, num_workers=workers, decode=decode
    )
    dm.setup("fit")
    model = BreedClassifier(
        dm.num_classes,
        arch="resnet50",
        weights=None,
        freeze=freeze,
        allow_random_frozen_backbone=True,
        channels_last=channels_last,
    )
    maybe_compile(model.net, {"enabled": compile_net})
    return dm, model


def dogbreed_run(
    root: Path,
    freeze: str,
    steps: int,
    warmup: int,
    batch: int,
    size: int,
    workers: int,
    precision: str,
    compile_net: bool,
    decode: str = "cpu",
    channels_last: bool = True,
) -> float:
    """The project's training step: Lightning Trainer, the project's loader and model, as fit() runs them."""
    dm, model = dogbreed_parts(root, freeze, batch, size, workers, compile_net, decode, channels_last)
    timer = StepTimer(warmup)
    configure_backends()
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=1,
        limit_train_batches=max(1, warmup) + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        precision=resolve_precision(precision),
    )
    trainer.fit(model, datamodule=dm)  # the data module's transfer hook runs, as in fit()
    return timer.images / timer.seconds


def bare_run(
    root: Path,
    freeze: str,
    steps: int,
    warmup: int,
    batch: int,
    size: int,
    workers: int,
    precision: str,
    compile_net: bool,
) -> float:
    """The same model, loader and optimizer in a hand-written loop: what Lightning adds is the difference."""
    dm, model = dogbreed_parts(root, freeze, batch, size, workers, compile_net)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    model.train()
    model.on_train_epoch_start()  # frozen BatchNorm layers stay in eval mode, as in the Lightning run
    optimizer = model.configure_optimizers()
    dtype = autocast_dtype(precision)
    images, start = 0, None
    for i, (x, y) in enumerate(dm.train_dataloader()):
        if i == warmup:
            synchronize(device)
            start = time.perf_counter()
        train_step(model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True), dtype)
        if i >= warmup:
            images += len(y)
        if i + 1 == warmup + steps:
            break
    synchronize(device)
    return images / (time.perf_counter() - start)


def train_step(model: BreedClassifier, optimizer, x: torch.Tensor, y: torch.Tensor, dtype) -> None:
    """One step as Lightning's automatic optimisation runs it, under autocast when `dtype` is set."""
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        loss = model.criterion(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def synthetic_run(
    freeze: str,
    steps: int,
    warmup: int,
    batch: int,
    size: int,
    precision: str,
    channels_last: bool = True,
    compile_net: bool = False,
) -> float:
    """Forward + backward of the same network on random tensors already on the device: no loader at all."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = BreedClassifier(
        4,
        arch="resnet50",
        weights=None,
        freeze=freeze,
        allow_random_frozen_backbone=True,
        channels_last=channels_last,
    ).to(device)
    maybe_compile(model.net, {"enabled": compile_net})
    model.train()
    model.on_train_epoch_start()
    optimizer = model.configure_optimizers()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    dtype = autocast_dtype(precision)
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            start = time.perf_counter()
        train_step(model, optimizer, x, y, dtype)
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def loader_rate(root: Path, size: int, images: int) -> float:
    """Decode + augment images/s of one process: the training transform on the project's dataset."""
    dm = DogBreedDataModule(root, arch="resnet50", image_size=size, batch_size=1, num_workers=0)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    dataset[0]  # first-use costs (imports, caches) out of the timing
    start = time.perf_counter()
    for i in range(images):
        dataset[i % len(dataset)]
    return images / (time.perf_counter() - start)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype Lightning uses for `precision` (resolved as fit() does), None for full precision."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(resolve_precision(precision)))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop_run(root: Path, freeze: str, steps: int, warmup: int, batch: int, size: int) -> float:
    """The plain loop: torchvision ImageFolder, default PIL loader, workers=0, NCHW fp32, manual loop."""
    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    data = datasets.ImageFolder(root / "train", transform=tf)
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_network("resnet50", len(data.classes)).to(device)
    apply_freeze(net, freeze)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    net.train()
    images, start = 0, None
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            images += len(y)
        if i + 1 == warmup + steps:
            break
    if device == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


# The input paths of --input-paths: name -> (data.decode, loader workers; None: every core but one).
INPUT_PATHS = {
    "cpu_decode_4_workers": ("cpu", 4),  # the vCPUs of an ml.g5.xlarge
    "cpu_decode_all_cores": ("cpu", None),
    "gpu_decode_4_workers": ("gpu", 4),
}
NEEDS_GPU = "needs a CUDA device: nvJPEG decodes on the GPU (on a CPU the main process would decode instead)"


def measured(run, repeats: int) -> dict:
    """The median images/s of `repeats` calls of `run`, or the error that stopped it (e.g. torch.compile
    without a C++ compiler): the grid reports what this machine can measure."""
    try:
        rates = [run() for _ in range(repeats)]
    except Exception as exc:  # one failing row must not cost the others
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"images_per_s": round(statistics.median(rates), 2), "runs": [round(r, 2) for r in rates]}


def input_path_grid(root: Path, args: argparse.Namespace, freeze: str) -> list[dict]:
    """Each input path with channels_last and torch.compile on and off, against the network's own speed."""
    run_args = (args.steps, args.warmup, args.batch, args.size)
    rows = []
    for channels_last in (True, False):
        for compile_net in (False, True):
            settings = {"channels_last": channels_last, "compile": compile_net}
            network = partial(synthetic_run, freeze, *run_args, args.precision, channels_last, compile_net)
            ceiling = measured(network, args.repeats)
            rows.append({"input": "network_alone", **settings, "needs_gpu": False, **ceiling})
            for name, (decode, workers) in INPUT_PATHS.items():
                workers = workers if workers is not None else default_num_workers()
                row = {"input": name, **settings, "workers": workers, "needs_gpu": decode == "gpu"}
                if decode == "gpu" and not torch.cuda.is_available():
                    rows.append({**row, "skipped": NEEDS_GPU})
                    continue
                ours = (*run_args, workers, args.precision, compile_net, decode, channels_last)
                row |= measured(partial(dogbreed_run, root, freeze, *ours), args.repeats)
                if "images_per_s" in row and "images_per_s" in ceiling:
                    row["share_of_network_speed"] = round(row["images_per_s"] / ceiling["images_per_s"], 3)
                rows.append(row)
    return rows


def compare_with_plain_loop(root: Path, args: argparse.Namespace, freeze: str, workers: int) -> dict:
    """dogbreed's step against the bare and plain loops (and the ceiling with --synthetic) for `freeze`."""
    run_args = (args.steps, args.warmup, args.batch, args.size)
    ours_args = (*run_args, workers, args.precision, args.compile)
    runs: dict[str, list[float]] = {"dogbreed": [], "bare": [], "plain": [], "synthetic": []}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits every variant alike
        runs["dogbreed"].append(dogbreed_run(root, freeze, *ours_args))
        runs["bare"].append(bare_run(root, freeze, *ours_args))
        if not args.no_plain:
            runs["plain"].append(plain_loop_run(root, freeze, *run_args))
        if args.synthetic:
            runs["synthetic"].append(synthetic_run(freeze, *run_args, args.precision))
    median = {k: statistics.median(v) for k, v in runs.items() if v}
    result = {f"{k}_images_per_s": round(v, 2) for k, v in median.items()}
    if "plain" in median:
        result["ratio_vs_plain_loop"] = round(median["dogbreed"] / median["plain"], 2)
    # Lightning's cost per step, relative to the same step in a hand-written loop.
    result["lightning_overhead_pct"] = round(100 * (median["bare"] / median["dogbreed"] - 1), 1)
    if "synthetic" in median:
        result["fraction_of_synthetic"] = round(median["dogbreed"] / median["synthetic"], 3)
    result["runs"] = {k: [round(x, 2) for x in v] for k, v in runs.items() if v}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", action="append", choices=["head", "layer4", "all"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="dogbreed loader workers (default: auto)")
    parser.add_argument("--photos", type=Path, default=None, help="folder of real JPEGs to replicate")
    parser.add_argument("--precision", default="auto", help="trainer.precision (auto: bf16 on GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (compile.enabled)")
    parser.add_argument("--synthetic", action="store_true", help="also the synthetic-tensor ceiling")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop (slow on a GPU)")
    parser.add_argument(
        "--input-paths",
        action="store_true",
        help="the input-path grid (CPU/GPU decode, channels_last, compile)",
    )
    args = parser.parse_args()
    workers = args.workers if args.workers is not None else default_num_workers()
    per_class = (max(1, args.warmup) + args.steps) * args.batch // 4 + args.batch
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_images(Path(tmp) / "data", args.photos, classes=4, per_class=per_class)
        per_worker = loader_rate(root, args.size, images=max(32, 4 * args.batch))
        for freeze in args.freeze or ["head", "all"]:
            if args.input_paths:
                results[freeze] = input_path_grid(root, args, freeze)
                continue
            result = compare_with_plain_loop(root, args, freeze, workers)
            loader_capacity = per_worker * max(1, workers)
            result["loader_capacity_images_per_s"] = round(loader_capacity, 1)
            result["loader_bound"] = loader_capacity < 1.1 * result["bare_images_per_s"]
            results[freeze] = result
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "mode": "input_paths" if args.input_paths else "against_plain_loop",
                "device": device,
                "cpu_count": available_cpus(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "image_size": args.size,
                "batch_size": args.batch,
                "steps": args.steps,
                "repeats": args.repeats,
                "loader_workers": "per row" if args.input_paths else workers,
                "precision": str(resolve_precision(args.precision)),
                "compile": "per row" if args.input_paths else args.compile,
                "data": str(args.photos or "generated 500x375 JPEGs"),
                "loader_images_per_s_per_worker": round(per_worker, 1),
                "load_average": os.getloadavg(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
