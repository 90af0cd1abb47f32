"""SageMaker Debugger's built-in rules, evaluated in-process on a TensorHistory.

Each check returns a Finding (an issue, or a clean pass with the numbers it looked at) or None when there
is not enough data yet. Where SageMaker counts "steps" of a mode, local runs count: training steps for
LossNotDecreasing and PoorWeightInitialization, validation runs for Overfit and the validation part of
Overtraining, and training epochs for the training part of Overtraining (per-batch losses are too noisy
to count improvements on).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from dogbreed.diagnostics.outcomes import Finding
from dogbreed.diagnostics.rule_settings import RuleSpec, rule_defaults
from dogbreed.diagnostics.tensor_history import TensorHistory

# SageMaker's default parameters of each rule, as the rules config ships them.
DEBUGGER_RULE_DEFAULTS = rule_defaults("debugger")

RECOMMENDATIONS = {
    "VanishingGradient": "Gradients are (near) zero: check that the layers that should train receive a "
    "gradient (a zeroed or detached head, saturated activations), raise the learning rate, or use "
    "normalisation/residual connections.",
    "ExplodingTensor": "Values became NaN or infinite: lower the learning rate, clip gradients "
    "(trainer.gradient_clip_val), or check the input data for NaN/Inf.",
    "Overfit": "Validation loss is well above training loss: add augmentation or regularisation "
    "(model.dropout, model.weight_decay), train fewer epochs or on more data.",
    "Overtraining": "The loss stopped improving: stop earlier (callbacks=early_stopping) or change the "
    "learning rate schedule (model.scheduler=cosine).",
    "PoorWeightInitialization": "Activation variances differ widely across layers or gradients are too "
    "narrow: use the pretrained weights or a standard initialisation (Kaiming/Xavier).",
    "LossNotDecreasing": "The training loss is not going down: check the learning rate (a zero or tiny "
    "model.lr), that the layers you expect to train are not frozen, and the labels.",
}


def _finite(value: float, only_nan: bool) -> bool:
    return not math.isnan(value) if only_nan else math.isfinite(value)


def check_vanishing_gradient(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    step = history.last_layer_step
    # NaN or infinite gradients are ExplodingTensor's business, not a vanishing gradient
    rows = [r for r in history.layer_stats.get(step, []) if math.isfinite(r["grad_mean_abs"])]
    if not rows:
        return None
    vanishing = [r for r in rows if r["grad_mean_abs"] < spec["threshold"]]
    smallest = min(rows, key=lambda r: r["grad_mean_abs"])
    numbers = {
        "layer": smallest["layer"],
        "grad_mean_abs": smallest["grad_mean_abs"],
        "vanishing_layers": len(vanishing),
        "layers": len(rows),
    }
    if vanishing:
        message = (
            f"{len(vanishing)} of {len(rows)} trainable tensors have mean |gradient| below "
            f"{spec['threshold']:g} (lowest: {smallest['layer']} {smallest['grad_mean_abs']:.3g})"
        )
        return Finding(True, message, step, numbers)
    return Finding(
        False, f"lowest mean |gradient| {smallest['grad_mean_abs']:.3g} ({smallest['layer']})", step, numbers
    )


def check_exploding_tensor(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    only_nan = bool(spec["only_nan"])
    what = "NaN" if only_nan else "NaN or infinite"
    bad_loss = history.first_nan_loss if only_nan else history.first_nonfinite_loss
    if bad_loss is not None:
        step, loss = bad_loss
        return Finding(
            True, f"training loss is {loss} ({what})", step, {"tensor": "train/loss", "value": loss}
        )
    # Earlier collections were checked when they were made: the latest one is enough.
    for row in history.layer_stats.get(history.last_layer_step, []):
        for key in ("grad_norm", "grad_max_abs", "weight_norm"):
            if not _finite(row[key], only_nan):
                message = f"{key} of {row['layer']} is {row[key]} ({what})"
                return Finding(True, message, row["step"], {"tensor": row["layer"], key: row[key]})
    if not history.train_losses:
        return None
    step = history.train_losses[-1][0]
    return Finding(False, f"no {what} values in the loss and collected tensors", step)


def check_overfit(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    pairs = [
        p
        for p in history.train_val_pairs
        if p[0] >= int(spec["start_step"]) and all(map(math.isfinite, p[1:]))
    ]
    if not pairs:
        return None
    in_a_row, finding = 0, None
    for step, train, val in pairs:
        ratio = (val - train) / train if train > 0 else math.inf
        numbers = {"train_loss": train, "val_loss": val, "ratio": ratio}
        in_a_row = in_a_row + 1 if ratio > spec["ratio_threshold"] else 0
        if in_a_row >= spec["patience"]:
            message = (
                f"(val loss {val:.4g} - train loss {train:.4g}) / train loss = {ratio:.3g} > "
                f"{spec['ratio_threshold']:g} for {in_a_row} validation(s)"
            )
            return Finding(True, message, step, numbers)
        finding = Finding(False, f"val/train loss gap ratio {ratio:.3g}", step, numbers)
    return finding


def _stalled(series: list[tuple[int, float]], patience: int, delta: float) -> tuple[int, float, int] | None:
    """The first (step, best, points) where `patience` points in a row did not beat the best by delta."""
    best, since = math.inf, 0
    for step, value in series:
        if value < best - delta:
            best, since = value, 0
        else:
            since += 1
            if since >= patience:
                return step, best, since
    return None


def check_overtraining(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    delta = float(spec["delta"])
    train = [(s, v) for s, _, v in history.epoch_train_losses]
    val = [(s, v) for s, _, v in history.val_losses]
    for name, series, patience in (
        ("training", train, int(spec["patience_train"])),
        ("validation", val, int(spec["patience_validation"])),
    ):
        stalled = _stalled(series, patience, delta)
        if stalled:
            step, best, points = stalled
            unit = "epochs" if name == "training" else "validations"
            message = f"{name} loss did not improve on its best {best:.4g} by {delta:g} for {points} {unit}"
            return Finding(True, message, step, {"mode": name, "best_loss": best, "points": points})
    if not train and not val:
        return None
    step = max([s for s, _ in train + val])
    return Finding(False, f"losses still improving ({len(train)} epochs, {len(val)} validations)", step)


def check_poor_weight_initialization(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    steps = int(spec["steps"])
    losses = [(s, v) for s, _, v in history.train_losses if s < steps]
    if not losses:
        return None
    # Activation variances and gradient spreads can tell from the first step; the loss needs patience.
    pattern = re.compile(str(spec["activation_inputs_regex"]))
    variances = {
        name: sum(v) / len(v)
        for name, v in history.relu_input_variance.items()
        if v and pattern.fullmatch(f"{name}_relu_input")
    }
    numbers: dict = {"relu_layers": len(variances)}
    if len(variances) >= 2:
        high, low = max(variances.values()), min(variances.values())
        ratio = high / low if low > 0 else math.inf
        numbers.update(max_relu_input_variance=high, min_relu_input_variance=low, variance_ratio=ratio)
        if ratio > spec["threshold"]:
            hi_name = max(variances, key=variances.get)
            lo_name = min(variances, key=variances.get)
            message = (
                f"ReLU input variance ratio {ratio:.3g} > {spec['threshold']:g} "
                f"({hi_name} {high:.3g} vs {lo_name} {low:.3g})"
            )
            return Finding(True, message, 0, numbers)
    spreads = {layer: [hi - lo for _, lo, hi in qs] for layer, qs in history.grad_percentiles.items() if qs}
    if spreads:
        widest = max(max(v) for v in spreads.values())
        numbers["max_gradient_p95_p5_spread"] = widest
        if widest < spec["distribution_range"]:
            message = (
                f"the widest 5th-95th percentile spread of the gradients, {widest:.3g}, is below "
                f"{spec['distribution_range']:g}: every layer's gradient distribution is too narrow"
            )
            return Finding(True, message, 0, numbers)
    if len(losses) < min(steps, int(spec["patience"]) + 1):
        return None
    stalled = _stalled(losses, int(spec["patience"]), 0.0)
    if stalled:
        step, best, points = stalled
        numbers.update(best_loss=best)
        return Finding(True, f"loss did not decrease for {points} of the first {steps} steps", step, numbers)
    return Finding(
        False, "activation variances, gradient spread and early loss look normal", losses[-1][0], numbers
    )


def check_loss_not_decreasing(spec: RuleSpec, history: TensorHistory) -> Finding | None:
    n = int(spec["num_steps"])
    series = history.val_losses if spec["mode"] in ("EVAL", "eval") else history.train_losses
    if not series or series[-1][0] < 2 * n - 1:
        return None

    # Mean loss of each window of n steps: steps 0..n-1, n..2n-1, ... (one pass over the series)
    sums: dict[int, list[float]] = {}
    for s, _, v in series:
        bucket = sums.setdefault(s // n, [0.0, 0])
        bucket[0] += v
        bucket[1] += 1
    complete = series[-1][0] // n if (series[-1][0] + 1) % n == 0 else series[-1][0] // n - 1
    finding = None
    for window in range(1, complete + 1):
        if window not in sums or window - 1 not in sums:
            continue
        end = window * n + n - 1
        previous = sums[window - 1][0] / sums[window - 1][1]
        current = sums[window][0] / sums[window][1]
        decrease = (previous - current) / abs(previous) * 100 if previous else 0.0
        numbers = {"previous_loss": previous, "current_loss": current, "decrease_percent": decrease}
        if decrease < spec["diff_percent"]:
            if -decrease > spec["increase_threshold_percent"]:
                message = (
                    f"mean loss rose by {-decrease:.3g}% over {n} steps ({previous:.4g} -> {current:.4g})"
                )
            else:
                message = (
                    f"mean loss fell by {decrease:.3g}% < {spec['diff_percent']:g}% over {n} steps "
                    f"({previous:.4g} -> {current:.4g})"
                )
            return Finding(True, message, end, numbers)
        finding = Finding(False, f"mean loss fell {decrease:.3g}% over the last {n} steps", end, numbers)
    return finding


DEBUGGER_CHECKS: dict[str, Callable[[RuleSpec, TensorHistory], Finding | None]] = {
    "VanishingGradient": check_vanishing_gradient,
    "ExplodingTensor": check_exploding_tensor,
    "Overfit": check_overfit,
    "Overtraining": check_overtraining,
    "PoorWeightInitialization": check_poor_weight_initialization,
    "LossNotDecreasing": check_loss_not_decreasing,
}
