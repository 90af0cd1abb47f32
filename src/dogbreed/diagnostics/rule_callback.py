"""What the debugger and the profiler callbacks share: the rule lifecycle of a run.

Collect while training, evaluate the rules, and once at the end of fit (or after an exception, in teardown)
stop collecting, write the data files, the rule outcomes (atomically), one `rule/<name>=<status>` metric line
per rule (a SageMaker job's metric definitions read them), the plots and the run's HTML report. Under DDP
only global rank zero writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning.pytorch as pl

from dogbreed.diagnostics.outcomes import RuleOutcome, rule_metric_lines
from dogbreed.files import write_text_atomic

log = logging.getLogger(__name__)


class RuleCallback(pl.Callback):
    """Base of TensorDebugger and TrainingProfiler; subclasses fill in the hooks below."""

    kind = "rules"  # "debugger" or "profiler": the log lines' word

    def __init__(self, out_dir: str | Path, plots: bool, report: bool) -> None:
        self.out_dir = Path(out_dir)
        self.plots, self.report = plots, report
        self._finished = False
        self._writes = True  # only rank zero writes files under DDP

    # ---- what a subclass provides -----------------------------------------------------------------
    def _stop_collecting(self) -> None:
        """Remove hooks, stop threads, flush what is pending."""

    def _evaluate(self, trainer: pl.Trainer | None) -> None:
        """Evaluate the rules on what was collected."""

    def outcomes(self) -> list[RuleOutcome]:
        raise NotImplementedError

    def _write_data(self) -> None:
        """The collected data as files in out_dir."""

    def _write_plots(self) -> None:
        """PNG plots of the collected data."""

    # ---- the lifecycle ----------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._writes = trainer.is_global_zero

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._finish(None)  # after an exception: keep what was collected, stop threads and hooks

    def _finish(self, trainer: pl.Trainer | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._stop_collecting()
        self._evaluate(trainer)
        if not self._writes:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._write_data()
        outcomes = [o.to_dict() for o in self.outcomes()]
        write_text_atomic(self.out_dir / "rule_outcomes.json", json.dumps(outcomes, indent=2, default=str))
        for o in outcomes:
            log.info("%s rule %s: %s %s", self.kind, o["rule"], o["status"], o["message"])
        print(rule_metric_lines(outcomes), flush=True)
        if self.plots:
            self._write_plots()
        if self.report:
            from dogbreed.diagnostics.report import write_diagnostics_report

            write_diagnostics_report(self.out_dir.parent)
