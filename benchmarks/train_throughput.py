"""Training throughput (images/s): dogbreed's Lightning step against a plain PyTorch loop written the way the
seed notebooks' train_model.py does it (ImageFolder + DataLoader + loop, PIL decode, fp32 NCHW).

Same model, same data, same machine, runs alternated. Prints JSON.

    python benchmarks/train_throughput.py --freeze head --freeze all --steps 8 --repeats 2
    python benchmarks/train_throughput.py --photos ../shared/data/real-photos   # real JPEGs, replicated
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
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from dogbreed.data import DogBreedDataModule
from dogbreed.model import BreedClassifier
from dogbreed.network import apply_freeze, build_network


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
    """Wall time of training batches after `warmup` (data wait included, as the plain loop measures it)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.images, self.start = warmup, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += len(batch[1])
            self.seconds = time.perf_counter() - self.start


def dogbreed_run(
    root: Path, freeze: str, steps: int, warmup: int, batch: int, size: int, workers: int
) -> float:
    dm = DogBreedDataModule(root, arch="resnet50", image_size=size, batch_size=batch, num_workers=workers)
    dm.setup("fit")
    model = BreedClassifier(dm.num_classes, arch="resnet50", weights=None, freeze=freeze)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="auto", devices=1, max_epochs=1, limit_train_batches=warmup + steps, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return timer.images / timer.seconds


def plain_loop_run(root: Path, freeze: str, steps: int, warmup: int, batch: int, size: int) -> float:
    """The seeds' shape: torchvision ImageFolder, default PIL loader, workers=0, NCHW fp32, manual loop."""
    tf = transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])  # fmt: skip
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
    args = parser.parse_args()
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))
    per_class = (args.warmup + args.steps) * args.batch // 4 + args.batch
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_images(Path(tmp) / "data", args.photos, classes=4, per_class=per_class)
        for freeze in args.freeze or ["head", "all"]:
            ours, plain = [], []
            for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
                ours.append(
                    dogbreed_run(root, freeze, args.steps, args.warmup, args.batch, args.size, workers)
                )
                plain.append(plain_loop_run(root, freeze, args.steps, args.warmup, args.batch, args.size))
            results[freeze] = {
                "dogbreed_images_per_s": round(statistics.median(ours), 2),
                "plain_loop_images_per_s": round(statistics.median(plain), 2),
                "ratio": round(statistics.median(ours) / statistics.median(plain), 2),
                "runs": {"dogbreed": [round(v, 2) for v in ours], "plain": [round(v, 2) for v in plain]},
            }
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(json.dumps({
        "benchmark": "train_throughput", "device": device, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "image_size": args.size, "batch_size": args.batch,
        "steps": args.steps, "loader_workers": workers, "data": str(args.photos or "generated 500x375 JPEGs"),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
