"""The profiler rules that need a GPU or a long run, on recorded-style samples (no GPU on CI)."""

from __future__ import annotations

import pytest

from dogbreed.diagnostics.outcomes import Finding
from dogbreed.diagnostics.profiler_rules import (
    PROFILER_CHECKS,
    PROFILER_RULE_DEFAULTS,
    ProfileData,
    StepTiming,
)
from dogbreed.diagnostics.rule_settings import parse_rule_specs
from dogbreed.diagnostics.system_monitor import SystemSample


def sample(t: float, cpu: float = 50.0, gpu: float | None = 90.0, gpu_memory: float | None = 50.0):
    return SystemSample(t, cpu, [cpu, cpu], 0.0, 40.0, 4.0, 0.0, 0.0, gpu, gpu_memory)


def check(rule: str, data: ProfileData, **parameters) -> Finding | str:
    spec = parse_rule_specs({rule: parameters}, PROFILER_RULE_DEFAULTS, "rules.profiler")[rule]
    return PROFILER_CHECKS[rule](spec, data)


def gpu_data(samples: list[SystemSample]) -> ProfileData:
    return ProfileData(samples=samples, steps=[], interval_s=0.5, num_workers=4, cpu_count=8, gpu=True)


@pytest.mark.parametrize(("util", "issue"), [(20.0, True), (95.0, False)])
def test_low_gpu_utilization(util, issue):
    finding = check("LowGPUUtilization", gpu_data([sample(i, gpu=util) for i in range(50)]), patience=10)
    assert finding.issue is issue
    assert finding.numbers["gpu_util_p95"] == pytest.approx(util)


def test_low_gpu_utilization_fluctuating():
    samples = [sample(i, gpu=95.0 if i % 4 else 0.0) for i in range(100)]
    finding = check("LowGPUUtilization", gpu_data(samples), patience=0)
    assert finding.issue and "fluctuates" in finding.message


def test_gpu_rules_are_not_evaluated_without_gpu_or_before_patience():
    no_gpu = ProfileData(samples=[sample(i, gpu=None) for i in range(5)], steps=[], interval_s=0.5)
    for rule in ("LowGPUUtilization", "BatchSize", "GPUMemoryIncrease"):
        reason = check(rule, no_gpu)
        assert isinstance(reason, str) and "no CUDA GPU" in reason
    reason = check("LowGPUUtilization", gpu_data([sample(i) for i in range(5)]))
    assert isinstance(reason, str) and "patience=1000" in reason


def test_gpu_memory_increase():
    rising = [sample(i, gpu_memory=10.0 + i) for i in range(40)]
    finding = check("GPUMemoryIncrease", gpu_data(rising), patience=0)
    assert (
        finding.issue and finding.numbers["max_moving_average"] > finding.numbers["first_moving_average"] + 5
    )
    flat = [sample(i, gpu_memory=30.0) for i in range(40)]
    assert not check("GPUMemoryIncrease", gpu_data(flat), patience=0).issue


def test_batch_size_when_everything_is_lightly_used():
    light = [sample(i, cpu=20.0, gpu=30.0, gpu_memory=10.0) for i in range(30)]
    assert check("BatchSize", gpu_data(light), patience=0).issue
    busy = [sample(i, cpu=20.0, gpu=95.0, gpu_memory=10.0) for i in range(30)]
    assert not check("BatchSize", gpu_data(busy), patience=0).issue


def test_step_outlier_counts_steps_beyond_three_standard_deviations():
    durations = [0.1] * 200 + [2.0] * 11
    steps = [StepTiming(i, 0, float(i), 0.0, d) for i, d in enumerate(durations)]
    data = ProfileData(samples=[], steps=steps, interval_s=0.5)
    finding = check("StepOutlier", data)
    assert finding.issue and finding.numbers["outliers"] == 11 and finding.step == 200
    assert not check("StepOutlier", data, n_outliers=11).issue


def test_io_bottleneck_reads_the_jobs_own_io_wait_not_the_machines():
    def io_sample(t: float, cpu_iowait: float, job_iowait: float | None) -> SystemSample:
        return SystemSample(t, 50.0, [50.0], cpu_iowait, 40.0, 4.0, 0.0, 0.0, 5.0, 50.0, job_iowait)

    # The GPU idles throughout; only the job's I/O wait decides (the machine's iowait says the opposite).
    blocked = gpu_data([io_sample(i, cpu_iowait=0.0, job_iowait=90.0) for i in range(20)])
    finding = check("IOBottleneck", blocked, patience=0)
    assert finding.issue and finding.numbers["median_job_iowait_percent_while_idle"] == 90.0
    others = gpu_data([io_sample(i, cpu_iowait=100.0, job_iowait=0.0) for i in range(20)])
    assert not check("IOBottleneck", others, patience=0).issue
    unknown = gpu_data([io_sample(i, cpu_iowait=100.0, job_iowait=None) for i in range(20)])
    unknown.job_iowait_reason = "thread states are unreadable here (needs Linux /proc)"
    reason = check("IOBottleneck", unknown, patience=0)
    assert isinstance(reason, str) and "needs Linux /proc" in reason
