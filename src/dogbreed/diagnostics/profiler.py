"""TrainingProfiler: a Lightning callback that samples the system, times steps and evaluates SageMaker's
profiler rules.

Step time is split with Lightning's hooks: data wait runs from the end of one training batch to the start
of the next (fetching and moving the batch), compute from on_train_batch_start to on_train_batch_end.
On a GPU the compute time is only exact with synchronize_cuda=true (a sync per step costs a little).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dogbreed.diagnostics.outcomes import Finding, RuleOutcome, act_on_issue, not_evaluated, outcome_from
from dogbreed.diagnostics.profiler_rules import (
    PROFILER_CHECKS,
    PROFILER_RULE_DEFAULTS,
    RECOMMENDATIONS,
    ProfileData,
    StepTiming,
)
from dogbreed.diagnostics.rule_callback import RuleCallback
from dogbreed.diagnostics.rule_settings import parse_rule_specs
from dogbreed.diagnostics.system_monitor import SystemMonitor

log = logging.getLogger(__name__)


class TrainingProfiler(RuleCallback):
    """Write `<out_dir>/{system,steps}.csv`, `summary.json`, `rule_outcomes.json`, plots, an optional
    torch profiler trace (`torch_trace.json`, open it in Perfetto or chrome://tracing) and the report."""

    kind = "profiler"

    def __init__(
        self,
        out_dir: str | Path,
        rules: Mapping[str, Any] | None = None,
        interval_s: float = 0.5,
        torch_trace_steps: int = 0,
        torch_trace_start: int = 5,
        synchronize_cuda: bool = False,
        plots: bool = True,
        report: bool = True,
    ) -> None:
        super().__init__(out_dir, plots, report)
        self.specs = parse_rule_specs(rules, PROFILER_RULE_DEFAULTS, "rules.profiler")
        self.monitor = SystemMonitor(interval_s=float(interval_s))
        self.torch_trace_steps, self.torch_trace_start = int(torch_trace_steps), int(torch_trace_start)
        self.synchronize_cuda = bool(synchronize_cuda) and torch.cuda.is_available()
        self.steps: list[StepTiming] = []
        self.findings: dict[str, Finding | str] = {}
        self.num_workers: int | None = None
        self._t0 = time.monotonic()
        self._last_end: float | None = None
        self._start = 0.0
        self._trace: torch.profiler.profile | None = None

    # ---- timing -----------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.monotonic()
        self.monitor.start()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        self.num_workers = getattr(loader, "num_workers", None)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.monotonic()  # validation time is not data wait

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        self._start = time.monotonic()
        if (
            self.torch_trace_steps > 0
            and trainer.global_step == self.torch_trace_start
            and self._trace is None
        ):
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._trace = torch.profiler.profile(activities=activities, record_shapes=False)
            self._trace.start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        if self.synchronize_cuda:
            torch.cuda.synchronize()
        now = time.monotonic()
        wait = self._start - (self._last_end if self._last_end is not None else self._start)
        step = trainer.global_step - 1
        self.steps.append(StepTiming(step, trainer.current_epoch, self._start, wait, now - self._start))
        self._last_end = now
        if self._trace is not None and step + 1 >= self.torch_trace_start + self.torch_trace_steps:
            self._stop_trace()

    def _stop_trace(self) -> None:
        if self._trace is None:
            return
        self._trace.stop()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._trace.export_chrome_trace(str(self.out_dir / "torch_trace.json"))
        log.info("profiler: torch trace written to %s", self.out_dir / "torch_trace.json")
        self._trace = None

    # ---- rules ------------------------------------------------------------------------------------
    def data(self) -> ProfileData:
        gpu = self.monitor.gpu
        return ProfileData(
            samples=list(self.monitor.samples),
            steps=list(self.steps),
            interval_s=self.monitor.interval_s,
            num_workers=self.num_workers,
            cpu_count=os.cpu_count() or 1,
            gpu=gpu.available,
            gpu_util_reason=None if gpu.util_available else gpu.util_reason,
            job_iowait_reason=self.monitor.io.reason,
        )

    def _evaluate(self, trainer: pl.Trainer | None) -> None:
        data = self.data()
        for name, spec in self.specs.items():
            previous = self.findings.get(name)
            if isinstance(previous, Finding) and previous.issue:
                continue
            finding = PROFILER_CHECKS[name](spec, data)
            self.findings[name] = finding
            if isinstance(finding, Finding) and finding.issue:
                act_on_issue(trainer, spec, finding)

    def outcomes(self) -> list[RuleOutcome]:
        outcomes = []
        for name, spec in self.specs.items():
            finding = self.findings.get(name)
            if isinstance(finding, str):
                outcomes.append(not_evaluated(spec, "profiler", finding))
            else:
                outcomes.append(outcome_from(spec, "profiler", finding, RECOMMENDATIONS[name]))
        return outcomes

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate(trainer)

    # ---- outputs (the lifecycle is RuleCallback's) ---------------------------------------------------
    def summary(self) -> dict[str, Any]:
        data = self.data()
        totals = [s.total_s for s in data.steps]
        waited = sum(s.data_wait_s for s in data.steps)
        facts: dict[str, Any] = {
            "training steps timed": len(totals),
            "median step time (s)": round(statistics.median(totals), 4) if totals else None,
            "mean step time (s)": round(statistics.fmean(totals), 4) if totals else None,
            "data wait (% of step time)": round(100 * waited / sum(totals), 1) if totals else None,
            "system samples": len(data.samples),
            "sampling interval (s)": data.interval_s,
            "CPU cores": data.cpu_count,
            "loader workers": data.num_workers,
            "GPU": torch.cuda.get_device_name() if data.gpu else "none",
        }
        if data.samples:
            facts["mean CPU (%)"] = round(statistics.fmean(s.cpu_percent for s in data.samples), 1)
            facts["peak memory used (GB)"] = round(max(s.memory_used_gb for s in data.samples), 2)
        if (self.out_dir / "torch_trace.json").is_file():
            facts["torch trace"] = str(self.out_dir / "torch_trace.json")
        return facts

    def _stop_collecting(self) -> None:
        self._stop_trace()
        self.monitor.stop()

    def _write_data(self) -> None:
        self.monitor.write_csv(self.out_dir / "system.csv", self._t0)
        with open(self.out_dir / "steps.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "epoch", "start", "data_wait_s", "compute_s"])
            writer.writeheader()
            for s in self.steps:
                writer.writerow({**asdict(s), "start": round(s.start - self._t0, 4)})
        (self.out_dir / "summary.json").write_text(json.dumps(self.summary(), indent=2))

    def _write_plots(self) -> None:
        from dogbreed.diagnostics.plots import plot_profiler

        plot_profiler(self.monitor.samples, self.steps, self._t0, self.out_dir / "plots")
