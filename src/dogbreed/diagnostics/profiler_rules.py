"""SageMaker Profiler's built-in rules, evaluated in-process on system samples and step timings.

A check returns a Finding, or a string: the reason it was not evaluated (no GPU, too few samples).
Where SageMaker asks whether the GPU is idle, a machine without a GPU asks whether the training loop was
waiting for a batch: that is when an accelerator would idle. Where SageMaker's IOBottleneck reads the
machine's CPU iowait, the local rule reads how much of the time the training job itself was blocked on I/O
(io_wait.py says why: CPU iowait is hidden by any other work and capped at 1/cores per blocked loader).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dogbreed.diagnostics.outcomes import Finding
from dogbreed.diagnostics.rule_settings import RuleSpec, rule_defaults, shipped_rule_settings
from dogbreed.diagnostics.system_monitor import SystemSample

# SageMaker's default parameters of each rule, as the rules config ships them.
PROFILER_RULE_DEFAULTS = rule_defaults("profiler")
# Percent of training time spent waiting for batches before Dataloader's verdict matters (a local setting).
DATALOADER_WAIT_THRESHOLD = float(
    shipped_rule_settings()["profiler"]["Dataloader"]["local"]["wait_threshold"]
)

RECOMMENDATIONS = {
    "LowGPUUtilization": "The GPU is mostly idle or fluctuates: increase data.batch_size, add loader workers "
    "(data.num_workers), or pick a smaller instance.",
    "CPUBottleneck": "The CPUs are saturated while training waits for data: use more or faster cores, "
    "lighter preprocessing (smaller data.image_size), or pre-resized images.",
    "IOBottleneck": "Training waits on disk I/O: put the data on faster storage, cache it in memory, or "
    "raise data.num_workers to overlap reads.",
    "BatchSize": "CPU, GPU and GPU memory are all lightly used: increase data.batch_size (and the learning "
    "rate with it) or use a smaller instance.",
    "StepOutlier": "Some steps take far longer than the rest: look for periodic work (checkpointing, "
    "logging, garbage collection) or contention from other processes in the torch trace.",
    "GPUMemoryIncrease": "GPU memory keeps growing: look for tensors kept across steps (losses stored "
    "without .detach()/.item()).",
    "Dataloader": "Training waits for batches and the number of loader workers does not fit the cores: "
    "set data.num_workers near the number of cores (data.num_workers=auto).",
}


@dataclass
class StepTiming:
    step: int
    epoch: int
    start: float  # time.monotonic() when the batch reached the training step
    data_wait_s: float  # time between the end of the previous step and this start
    compute_s: float  # forward, backward and optimizer step

    @property
    def total_s(self) -> float:
        return self.data_wait_s + self.compute_s


@dataclass
class ProfileData:
    samples: list[SystemSample]
    steps: list[StepTiming]
    interval_s: float
    num_workers: int | None = None
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    gpu: bool = False
    gpu_util_reason: str | None = None  # why GPU utilisation is unknown, when it is
    job_iowait_reason: str | None = None  # why the training job's I/O wait is unknown, when it is
    _starts: list[float] = field(default_factory=list, repr=False)

    def waiting_fraction(self, end: float) -> float:
        """The fraction of the sampling interval ending at `end` that the training loop spent waiting."""
        begin = end - self.interval_s
        if len(self._starts) != len(self.steps):
            self._starts = [s.start for s in self.steps]
        waited = 0.0
        # A wait ends when its step starts: only steps starting after `begin` can overlap the interval.
        for step in self.steps[bisect.bisect_left(self._starts, begin) :]:
            wait_begin = step.start - step.data_wait_s
            if wait_begin >= end:
                break
            waited += max(0.0, min(step.start, end) - max(wait_begin, begin))
        return waited / self.interval_s


def _after_patience(spec: RuleSpec, data: ProfileData) -> list[SystemSample] | str:
    patience = int(spec["patience"])
    if len(data.samples) <= patience:
        return (
            f"only {len(data.samples)} system samples; the rule starts after patience={patience} "
            f"(that is {patience * data.interval_s:g} s at interval_s={data.interval_s:g})"
        )
    return data.samples[patience:]


def _needs_gpu(data: ProfileData) -> str | None:
    if not data.gpu:
        return "no CUDA GPU on this machine: the rule needs GPU utilisation and memory"
    return data.gpu_util_reason


def check_low_gpu_utilization(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if reason := _needs_gpu(data):
        return reason
    samples = _after_patience(spec, data)
    if isinstance(samples, str):
        return samples
    util = np.array([s.gpu_util_percent for s in samples[-int(spec["window"]) :]], dtype=float)
    p5, p95 = np.percentile(util, [5, 95])
    numbers = {"gpu_util_p5": p5, "gpu_util_p95": p95, "samples": len(util)}
    if p95 < spec["threshold_p95"]:
        return Finding(
            True, f"GPU utilisation p95 {p95:.1f}% < {spec['threshold_p95']}%: underused", None, numbers
        )
    if p5 < spec["threshold_p5"]:
        message = f"GPU utilisation fluctuates: p95 {p95:.1f}% but p5 {p5:.1f}% < {spec['threshold_p5']}%"
        return Finding(True, message, None, numbers)
    return Finding(False, f"GPU utilisation p5 {p5:.1f}%, p95 {p95:.1f}%", None, numbers)


def _bottleneck(
    spec: RuleSpec,
    data: ProfileData,
    measure: Callable[[SystemSample], float],
    limit: float,
    name: str,
    what: str,
) -> Finding | str:
    """The share of samples in which the accelerator idles (or the loop waits) while `measure` > `limit`."""
    samples = _after_patience(spec, data)
    if isinstance(samples, str):
        return samples
    if data.gpu and data.gpu_util_reason is None:
        idle = [s for s in samples if s.gpu_util_percent < spec["gpu_threshold"]]
        idle_means = f"GPU utilisation < {spec['gpu_threshold']}%"
    else:
        # Without a GPU only the training period can tell waiting from computing; its first step is
        # start-up (allocations, loader workers starting), as SageMaker's patience skips.
        if data.steps:
            first, last = data.steps[1 if len(data.steps) > 1 else 0], data.steps[-1]
            begin, end = first.start - first.data_wait_s, last.start + last.compute_s + data.interval_s
            samples = [s for s in samples if begin <= s.time <= end]
        if not samples:
            return "no system samples taken during training steps"
        idle = [s for s in samples if data.waiting_fraction(s.time) > 0.5]
        idle_means = "the training loop waiting for data (no GPU)"
    bottlenecks = sum(measure(s) > limit for s in idle)
    percent = 100.0 * bottlenecks / len(samples)
    numbers = {"bottleneck_samples": bottlenecks, "idle_samples": len(idle), "samples": len(samples)}
    numbers["bottleneck_percent"] = percent
    if idle:  # what the measure was while idle, to see how far from the limit it was
        numbers[f"median_{name}_while_idle"] = float(np.median([measure(s) for s in idle]))
    message = f"{percent:.0f}% of samples had {what} during {idle_means}"
    return Finding(percent > spec["threshold"], f"{message} (threshold {spec['threshold']}%)", None, numbers)


def check_cpu_bottleneck(spec: RuleSpec, data: ProfileData) -> Finding | str:
    limit = spec["cpu_threshold"]
    return _bottleneck(spec, data, lambda s: s.cpu_percent, limit, "cpu_percent", f"CPU > {limit}%")


def check_io_bottleneck(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if data.job_iowait_reason:
        return f"the training job's I/O wait is unknown: {data.job_iowait_reason}"
    limit = spec["io_threshold"]
    return _bottleneck(
        spec,
        data,
        lambda s: s.job_iowait_percent or 0.0,
        limit,
        "job_iowait_percent",
        f"the training job blocked on I/O > {limit}% of the time",
    )


def check_batch_size(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if reason := _needs_gpu(data):
        return reason
    samples = _after_patience(spec, data)
    if isinstance(samples, str):
        return samples
    window = samples[-int(spec["window"]) :]
    cpu = float(np.percentile([s.cpu_percent for s in window], 95))
    gpu = float(np.percentile([s.gpu_util_percent for s in window], 95))
    memory = float(np.percentile([s.gpu_memory_percent for s in window], 95))
    numbers = {"cpu_p95": cpu, "gpu_util_p95": gpu, "gpu_memory_p95": memory}
    low = cpu < spec["cpu_threshold_p95"] and gpu < spec["gpu_threshold_p95"]
    low = low and memory < spec["gpu_memory_threshold_p95"]
    message = f"p95 of CPU {cpu:.0f}%, GPU {gpu:.0f}%, GPU memory {memory:.0f}%"
    return Finding(low, message + (": all low, the batch could be larger" if low else ""), None, numbers)


def check_step_outlier(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if len(data.steps) < 3:
        return f"only {len(data.steps)} training steps timed"
    durations = np.array([s.total_s for s in data.steps])
    mean, std = float(durations.mean()), float(durations.std())
    limit = mean + float(spec["stddev"]) * std
    outliers = [s for s in data.steps if s.total_s > limit]
    numbers = {"mean_step_s": mean, "std_step_s": std, "limit_s": limit, "outliers": len(outliers)}
    if outliers:
        worst = max(outliers, key=lambda s: s.total_s)
        numbers.update(slowest_step=worst.step, slowest_step_s=worst.total_s)
    issue = len(outliers) > int(spec["n_outliers"])
    message = f"{len(outliers)} steps slower than mean + {spec['stddev']} std ({limit:.3g} s)"
    step = max(outliers, key=lambda s: s.total_s).step if issue else None
    return Finding(issue, message + f", {spec['n_outliers']} allowed", step, numbers)


def check_gpu_memory_increase(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if not data.gpu:
        return "no CUDA GPU on this machine: the rule watches GPU memory"
    samples = _after_patience(spec, data)
    if isinstance(samples, str):
        return samples
    window = int(spec["window"])
    memory = np.array([s.gpu_memory_percent for s in samples], dtype=float)
    if len(memory) < window:
        return f"only {len(memory)} samples after patience, window={window}"
    moving = np.convolve(memory, np.ones(window) / window, mode="valid")
    rise = float(moving.max() - moving[0])
    numbers = {"first_moving_average": float(moving[0]), "max_moving_average": float(moving.max())}
    issue = rise > spec["increase"]
    return Finding(issue, f"GPU memory moving average rose by {rise:.1f} points", None, numbers)


def check_dataloader(spec: RuleSpec, data: ProfileData) -> Finding | str:
    if not data.steps:
        return "no training steps timed"
    if data.num_workers is None:
        return "the training data loader's worker count is unknown"
    waited = sum(s.data_wait_s for s in data.steps)
    wait_percent = 100.0 * waited / max(sum(s.total_s for s in data.steps), 1e-9)
    workers_percent = 100.0 * data.num_workers / data.cpu_count
    wait_threshold = float(spec.local.get("wait_threshold", DATALOADER_WAIT_THRESHOLD))
    numbers = {
        "data_wait_percent": wait_percent,
        "num_workers": data.num_workers,
        "cpu_count": data.cpu_count,
        "workers_percent_of_cores": workers_percent,
    }
    out_of_range = not spec["min_threshold"] <= workers_percent <= spec["max_threshold"]
    message = (
        f"training waited for data {wait_percent:.0f}% of the time; {data.num_workers} loader workers on "
        f"{data.cpu_count} cores = {workers_percent:.0f}% "
        f"(range {spec['min_threshold']}-{spec['max_threshold']}%)"
    )
    return Finding(wait_percent > wait_threshold and out_of_range, message, None, numbers)


PROFILER_CHECKS: dict[str, Callable[[RuleSpec, ProfileData], Finding | str]] = {
    "LowGPUUtilization": check_low_gpu_utilization,
    "CPUBottleneck": check_cpu_bottleneck,
    "IOBottleneck": check_io_bottleneck,
    "BatchSize": check_batch_size,
    "StepOutlier": check_step_outlier,
    "GPUMemoryIncrease": check_gpu_memory_increase,
    "Dataloader": check_dataloader,
}
