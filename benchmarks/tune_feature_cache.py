"""The same Optuna study with and without the feature cache, on the same data: wall time and best objective.

    python benchmarks/tune_feature_cache.py [--trials 20] [--repeats 1] [--data PATH] [--weights DEFAULT]

Both studies run tune's `run_study` on a frozen-backbone ResNet50 (model.freeze=head) with the same seed,
search space and pruner; the cached study starts from an empty cache, so its time includes computing the
features once. Runs alternate (off, on, on, off, ...) so that load from other processes on a shared machine
falls on both. Prints one JSON object.

Without --data, a synthetic ImageFolder set (the project's embedded generator) is made in a temporary folder.
Without downloadable weights (offline), --weights null uses a seeded random backbone: the timings are the
same, the objective is not that of a pretrained network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dogbreed.tracking.manifest import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return hydra_compose("tune", overrides=overrides)


def run_one(args: argparse.Namespace, data_root: Path, work: Path, cached: bool, repeat: int) -> dict:
    from optuna.trial import TrialState

    from dogbreed.tuning.study import run_study

    run_dir = work / f"{'cached' if cached else 'images'}-{repeat}"
    cfg = compose(
        [
            f"run_dir={run_dir}",
            f"data.root={data_root}",
            f"model={args.arch}",
            f"model.weights={args.weights}",
            "model.freeze=head",
            "model.allow_random_frozen_backbone=true",  # --weights null: timings only
            f"data.image_size={args.image_size}",
            f"data.num_workers={args.num_workers}",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            f"search={args.search}",
            f"tune.n_trials={args.trials}",
            f"feature_cache.enabled={str(cached).lower()}",
            f"feature_cache.dir={run_dir / 'features'}",  # empty at the start: computing it is timed
            *args.override,
        ]
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    study = run_study(cfg)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    states = [t.state for t in study.trials]
    return {
        "feature_cache": cached,
        "repeat": repeat,
        "wall_seconds": round(seconds, 1),
        # CPU time of this process (all its threads): less sensitive to other processes than wall time.
        "cpu_seconds": round(cpu_seconds, 1),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of studies (alternating order)")
    parser.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet50"])
    parser.add_argument("--weights", default="null", help="DEFAULT, a checkpoint path, or null")
    parser.add_argument("--search", default="default", help="conf/search/<name>.yaml")
    parser.add_argument("--data", type=Path, help="an ImageFolder root (train/ valid/ test/)")
    parser.add_argument("--classes", type=int, default=5, help="synthetic data: classes")
    parser.add_argument("--train-per-class", type=int, default=20, help="synthetic data: train images/class")
    parser.add_argument(
        "--eval-per-class", type=int, default=6, help="synthetic data: valid/test images/class"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-workers", type=int, default=0, help="0 keeps decoding in the timed process")
    parser.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    parser.add_argument(
        "--modes", default="images,cache", help="which studies: images (no cache), cache, or both"
    )
    parser.add_argument("override", nargs="*", help="more Hydra overrides for both studies")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("DOGBREED_CACHE", tempfile.mkdtemp(prefix="dogbreed-bench-cache-"))
    work = args.work or Path(tempfile.mkdtemp(prefix="dogbreed-bench-tune-"))
    data_root = args.data
    if data_root is None:
        from dogbreed.data.embedded import generate_dataset

        data_root = generate_dataset(
            work / "data",
            num_classes=args.classes,
            images_per_class={
                "train": args.train_per_class,
                "valid": args.eval_per_class,
                "test": args.eval_per_class,
            },
            image_size=args.image_size,
            seed=0,
        )

    runs = []
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        wanted = {"images": False, "cache": True}
        modes = {wanted[m.strip()] for m in args.modes.split(",")}
        for cached in (c for c in order if c in modes):
            with contextlib.redirect_stdout(sys.stderr):  # training's metric lines; stdout is for the JSON
                runs.append(run_one(args, data_root, work, cached, repeat))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)

    import torch

    def median(cached: bool, key: str = "wall_seconds") -> float | None:
        values = [r[key] for r in runs if r["feature_cache"] is cached]
        return statistics.median(values) if values else None

    def ratio(key: str) -> float | None:
        images, cache = median(False, key), median(True, key)
        return round(images / cache, 1) if images and cache else None

    result = {
        "benchmark": "tune_feature_cache",
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": "shared machine: other processes ran at the same time, runs alternate",
        },
        "study": {
            "trials": args.trials,
            "arch": args.arch,
            "weights": args.weights,
            "freeze": "head",
            "search": args.search,
            "image_size": args.image_size,
            "data": str(data_root),
            "overrides": args.override,
        },
        "runs": runs,
        "median_wall_seconds": {"images": median(False), "feature_cache": median(True)},
        "median_cpu_seconds": {
            "images": median(False, "cpu_seconds"),
            "feature_cache": median(True, "cpu_seconds"),
        },
        "speedup": ratio("wall_seconds"),
        "cpu_speedup": ratio("cpu_seconds"),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
