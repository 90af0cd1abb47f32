"""How one training epoch's time grows with the number of images and the image size. Prints JSON.

Each point is a real run of the real config (conf/, ResNet50 by default) through dogbreed.training.fit on
generated 500x375 JPEGs; the figure is the wall time of the first training epoch (loader start-up included,
validation and test excluded).

    python benchmarks/epoch_scaling.py --images 64 128 256 --sizes 224
    python benchmarks/epoch_scaling.py model.freeze=all --images 128 --sizes 64 128 224   # overrides first
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from train_throughput import make_images

from dogbreed.training.acceleration import available_cpus
from dogbreed.training.fit import fit

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CLASSES = 4


class EpochTimer(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def epoch_seconds(root: Path, run_dir: Path, size: int, overrides: list[str]) -> float:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            overrides=[
                f"run_dir={run_dir}",
                f"data.root={root}",
                f"data.image_size={size}",
                "model.weights=null",
                "model.allow_random_frozen_backbone=true",  # timing, not accuracy
                "trainer.max_epochs=1",
                "trainer.limit_val_batches=0",
                "trainer.limit_test_batches=1",
                "export=false",
                "trainer.enable_progress_bar=false",
                "~callbacks.model_checkpoint",
                *overrides,
            ],
        )
    timer = EpochTimer()
    with contextlib.redirect_stdout(sys.stderr):  # fit prints metric lines; stdout is for the JSON
        fit(cfg, extra_callbacks=[timer])
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[64, 128, 256], help="training images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224], help="image sizes (px)")
    parser.add_argument("overrides", nargs="*", help="train config overrides")
    args = parser.parse_args()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.images:
            root = make_images(Path(tmp) / f"data{count}", None, classes=CLASSES, per_class=count // CLASSES)
            for size in args.sizes:
                seconds = epoch_seconds(root, Path(tmp) / f"run{count}_{size}", size, args.overrides)
                points.append(
                    {
                        "images": count,
                        "image_size": size,
                        "epoch_s": round(seconds, 2),
                        "images_per_s": round(count / seconds, 2),
                    }
                )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(
        json.dumps(
            {
                "benchmark": "epoch_scaling",
                "device": device,
                "cpu_count": available_cpus(),
                "overrides": args.overrides,
                "load_average": os.getloadavg(),
                "points": points,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
