"""Step time with debugger=on profiler=on against both off, at their default intervals. Prints JSON.

Both variants run the real config (conf/, experiment=smoke unless overridden) through dogbreed.training.fit,
alternately, so drift in the machine's load hits both alike; the figure is the ratio of mean step times
(total time of the timed steps over their number: the periodic collections are part of it, as they are of
a run).

    python benchmarks/debug_overhead.py --repeats 3 --steps 100
    python benchmarks/debug_overhead.py model=resnet50 data.image_size=224 data.batch_size=32   # any override
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir

from dogbreed.training.fit import fit

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class StepTimer(pl.Callback):
    """Wall time from one training batch's start to the next one's (data wait and all callbacks included)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.starts = warmup, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)][self.warmup :]


def mean_step_time(run_dir: Path, overrides: list[str], steps: int, warmup: int, diagnostics: bool) -> float:
    switches = ["debugger=on", "profiler=on"] if diagnostics else ["debugger=off", "profiler=off"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            overrides=[
                f"run_dir={run_dir}",
                "experiment=smoke",
                "export=false",
                "trainer.max_epochs=1000",
                f"trainer.max_steps={warmup + steps + 1}",
                "trainer.limit_val_batches=1",
                "trainer.limit_test_batches=1",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                *switches,
                *overrides,
            ],
        )
    timer = StepTimer(warmup)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON result
        fit(cfg, extra_callbacks=[timer])
    return statistics.fmean(timer.step_times())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # more than the debugger's save interval (50), so the per-layer statistics are part of what is timed
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both variants")
    args = parser.parse_args()
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate: off, on, off, on, ...
            for variant, times in (("off", off), ("on", on)):
                run_dir = Path(tmp) / f"{variant}{i}"
                on_ = variant == "on"
                times.append(mean_step_time(run_dir, args.overrides, args.steps, args.warmup, on_))
    ratio = statistics.median(on) / statistics.median(off)  # medians over runs of mean step times
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(
        json.dumps(
            {
                "benchmark": "debug_overhead",
                "device": device,
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "overrides": ["experiment=smoke", *args.overrides],
                "steps_per_run": args.steps,
                "repeats": args.repeats,
                "mean_step_s_off": round(statistics.median(off), 4),
                "mean_step_s_on": round(statistics.median(on), 4),
                "ratio_on_off": round(ratio, 4),
                "overhead_percent": round(100 * (ratio - 1), 2),
                "runs_s": {"off": [round(v, 4) for v in off], "on": [round(v, 4) for v in on]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
