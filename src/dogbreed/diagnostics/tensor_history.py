"""What the debugger collects during training (losses, per-layer gradient and weight statistics), as CSV."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

LAYER_FIELDS = (
    "step",
    "layer",
    "grad_norm",
    "grad_mean_abs",
    "grad_max_abs",
    "weight_norm",
    "weight_mean",
    "weight_std",
)


@dataclass
class TensorHistory:
    # (global step, epoch, loss) of every training batch
    train_losses: list[tuple[int, int, float]] = field(default_factory=list)
    # (global step, epoch, mean loss) of every validation run
    val_losses: list[tuple[int, int, float]] = field(default_factory=list)
    # (global step, epoch, mean training-batch loss) of every training epoch
    epoch_train_losses: list[tuple[int, int, float]] = field(default_factory=list)
    # (step, mean training loss since the previous validation, validation loss) at each validation
    train_val_pairs: list[tuple[int, float, float]] = field(default_factory=list)
    # the first (step, loss) that was NaN, and the first that was NaN or infinite
    first_nan_loss: tuple[int, float] | None = None
    first_nonfinite_loss: tuple[int, float] | None = None
    # global step -> one row of LAYER_FIELDS per trainable tensor, at the collection steps
    layer_stats: dict[int, list[dict]] = field(default_factory=dict)
    # ReLU module name -> variances of its inputs over the first steps (PoorWeightInitialization)
    relu_input_variance: dict[str, list[float]] = field(default_factory=dict)
    # layer -> (5th, 95th) percentile of its gradients, per step, over the first steps
    grad_percentiles: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)

    def add_train_losses(self, losses: list[tuple[int, int, float]]) -> None:
        for step, _, loss in losses:
            if self.first_nonfinite_loss is None and not math.isfinite(loss):
                self.first_nonfinite_loss = (step, loss)
            if self.first_nan_loss is None and math.isnan(loss):
                self.first_nan_loss = (step, loss)
        self.train_losses.extend(losses)

    @property
    def last_layer_step(self) -> int | None:
        return next(reversed(self.layer_stats), None)

    def write_csv(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "losses.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "epoch", "mode", "loss"])
            writer.writerows((s, e, "train", v) for s, e, v in self.train_losses)
            writer.writerows((s, e, "eval", v) for s, e, v in self.val_losses)
        with open(out_dir / "layer_stats.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LAYER_FIELDS)
            writer.writeheader()
            for rows in self.layer_stats.values():
                writer.writerows(rows)
        if self.relu_input_variance:
            with open(out_dir / "relu_input_variance.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["layer", "call", "variance"])
                for name, values in self.relu_input_variance.items():
                    writer.writerows((name, i, v) for i, v in enumerate(values))


@torch.no_grad()
def layer_statistics(named_params: list[tuple[str, torch.nn.Parameter]], step: int) -> list[dict]:
    """Gradient and weight statistics of each parameter that has a gradient, with one device sync.

    L2 norms go through torch._foreach_norm (what clip_grad_norm_ uses): one fused pass over all tensors.
    The element-wise statistics of gradients are the expensive part on CPU, hence the default
    save_interval of 50 steps (cost measured in docs/benchmarks.md, "Debugger and profiler overhead")."""
    named = [(name, p) for name, p in named_params if p.grad is not None]
    if not named:
        return []
    grads = [p.grad.detach().float() for _, p in named]
    weights = [p.detach().float() for _, p in named]
    zero = torch.zeros((), device=grads[0].device)
    columns = [
        torch.stack(torch._foreach_norm(grads, 2)),
        torch.stack([g.abs().mean() for g in grads]),
        torch.stack([g.abs().amax() for g in grads]),
        torch.stack(torch._foreach_norm(weights, 2)),
        torch.stack([w.mean() for w in weights]),
        torch.stack([w.std() if w.numel() > 1 else zero for w in weights]),
    ]
    values = torch.stack(columns, dim=1).cpu().tolist()
    return [
        dict(zip(LAYER_FIELDS, (step, name, *row), strict=True))
        for (name, _), row in zip(named, values, strict=True)
    ]


@torch.no_grad()
def gradient_percentiles(grad: torch.Tensor, max_values: int = 4096) -> tuple[float, float]:
    """5th and 95th percentiles of a gradient, from an evenly strided sample for large tensors."""
    flat = grad.detach().float().flatten()
    if flat.numel() > max_values:
        flat = flat[:: flat.numel() // max_values]
    q = torch.quantile(flat, torch.tensor([0.05, 0.95], device=flat.device)).cpu().tolist()
    return q[0], q[1]
