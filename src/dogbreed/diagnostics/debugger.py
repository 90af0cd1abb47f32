"""TensorDebugger: a Lightning callback that collects tensors and evaluates SageMaker's debugger rules.

Switched on with `debugger=on` (conf/debugger/on.yaml); the rules and thresholds come from
dogbreed/conf/rules/sagemaker.yaml. Only trainable parameters are looked at, so frozen layers cost nothing and
cannot break it (smdebug's hooks crash on them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from dogbreed.diagnostics.debugger_rules import DEBUGGER_CHECKS, DEBUGGER_RULE_DEFAULTS, RECOMMENDATIONS
from dogbreed.diagnostics.outcomes import Finding, RuleOutcome, act_on_issue, outcome_from
from dogbreed.diagnostics.rule_callback import RuleCallback
from dogbreed.diagnostics.rule_settings import parse_rule_specs
from dogbreed.diagnostics.tensor_history import TensorHistory, gradient_percentiles, layer_statistics

log = logging.getLogger(__name__)


class TensorDebugger(RuleCallback):
    """Collect losses (every step) and per-layer gradient/weight statistics (every `save_interval` steps),
    evaluate the debugger rules as training goes (acting on `action: stop`), and write
    `<out_dir>/{losses,layer_stats}.csv`, `rule_outcomes.json`, plots and the run's HTML report; with a
    TensorBoard logger, also weight and gradient histograms at the collection steps (`histograms`)."""

    kind = "debugger"

    def __init__(
        self,
        out_dir: str | Path,
        rules: Mapping[str, Any] | None = None,
        save_interval: int = 50,
        val_loss_key: str = "val/loss",
        plots: bool = True,
        report: bool = True,
        histograms: bool = True,
    ) -> None:
        if int(save_interval) < 1:
            raise ValueError(f"debugger save_interval={save_interval} must be >= 1")
        super().__init__(out_dir, plots, report)
        self.specs = parse_rule_specs(rules, DEBUGGER_RULE_DEFAULTS, "rules.debugger")
        self.save_interval = int(save_interval)
        self.val_loss_key = val_loss_key
        self.histograms = histograms
        self.history = TensorHistory()
        self.findings: dict[str, Finding] = {}
        self._pending: list[tuple[int, int, torch.Tensor]] = []
        self._params: list[tuple[str, nn.Parameter]] = []
        self._hooks: list[Any] = []
        self._step = 0
        self._epoch_start_index = 0
        self._val_start_index = 0

    # ---- collection -------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._params = [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad]
        log.info(
            "debugger: watching %d trainable tensors, every %d steps", len(self._params), self.save_interval
        )
        if "PoorWeightInitialization" in self.specs:
            for name, module in pl_module.named_modules():
                if isinstance(module, nn.ReLU):
                    self._hooks.append(module.register_forward_pre_hook(self._relu_input_hook(name)))

    def _relu_input_hook(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if module.training and args and torch.is_tensor(args[0]):
                var = args[0].detach().float().var().item()
                self.history.relu_input_variance.setdefault(name, []).append(var)

        return hook

    def _early_steps(self) -> int:
        spec = self.specs.get("PoorWeightInitialization")
        return int(spec["steps"]) if spec else 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        self._step = trainer.global_step

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        step = self._step
        if step % self.save_interval == 0:
            self.history.layer_stats[step] = layer_statistics(self._params, step)
            if self.histograms:
                self._log_histograms(trainer, step)
        if step < self._early_steps():
            for name, p in self._params:
                if p.grad is not None and p.grad.numel() > 1:
                    low, high = gradient_percentiles(p.grad)
                    self.history.grad_percentiles.setdefault(name, []).append((step, low, high))

    @torch.no_grad()
    def _log_histograms(self, trainer: pl.Trainer, step: int) -> None:
        """Weight and gradient histograms of the watched tensors in TensorBoard (`logger=tensorboard`), at
        the steps the statistics are collected."""
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            for name, p in self._params:
                logger.experiment.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
                if p.grad is not None:
                    logger.experiment.add_histogram(f"gradients/{name}", p.grad.detach().float().cpu(), step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if torch.is_tensor(loss):
            self._pending.append((self._step, trainer.current_epoch, loss.detach()))
        if self._hooks and self._step + 1 >= self._early_steps():
            for hook in self._hooks:
                hook.remove()
            self._hooks = []
        if self._step % self.save_interval == 0:
            self._flush()
            self._evaluate(trainer)

    def _flush(self) -> None:
        """Move the losses kept as tensors to floats: one device sync per collection, not one per step."""
        if not self._pending:
            return
        values = torch.stack([loss.float() for _, _, loss in self._pending]).cpu().tolist()
        self.history.add_train_losses([(s, e, v) for (s, e, _), v in zip(self._pending, values, strict=True)])
        self._pending = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()
        epoch = self.history.train_losses[self._epoch_start_index :]
        self._epoch_start_index = len(self.history.train_losses)
        if epoch:
            mean = sum(v for _, _, v in epoch) / len(epoch)
            self.history.epoch_train_losses.append((epoch[-1][0], trainer.current_epoch, mean))
        self._evaluate(trainer)
        if self._writes:
            self.history.write_csv(self.out_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.val_loss_key not in trainer.callback_metrics:
            return
        self._flush()
        val = float(trainer.callback_metrics[self.val_loss_key])
        step = max(trainer.global_step - 1, 0)
        self.history.val_losses.append((step, trainer.current_epoch, val))
        since = self.history.train_losses[self._val_start_index :]
        self._val_start_index = len(self.history.train_losses)
        if since:
            self.history.train_val_pairs.append((step, sum(v for _, _, v in since) / len(since), val))
        self._evaluate(trainer)

    # ---- rules ------------------------------------------------------------------------------------
    def _evaluate(self, trainer: pl.Trainer | None) -> None:
        for name, spec in self.specs.items():
            if name in self.findings and self.findings[name].issue:
                continue  # the first issue is the one reported, as SageMaker's rule job does
            finding = DEBUGGER_CHECKS[name](spec, self.history)
            if finding is None:
                continue
            self.findings[name] = finding
            if finding.issue:
                act_on_issue(trainer, spec, finding)

    def outcomes(self) -> list[RuleOutcome]:
        return [
            outcome_from(spec, "debugger", self.findings.get(name), RECOMMENDATIONS[name])
            for name, spec in self.specs.items()
        ]

    # ---- outputs (the lifecycle is RuleCallback's) ---------------------------------------------------
    def _stop_collecting(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._flush()

    def _write_data(self) -> None:
        self.history.write_csv(self.out_dir)

    def _write_plots(self) -> None:
        from dogbreed.diagnostics.plots import plot_debugger

        plot_debugger(self.history, self.out_dir / "plots")
