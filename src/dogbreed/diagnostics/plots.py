"""PNG plots of what the debugger and the profiler collected (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dogbreed.diagnostics.tensor_history import TensorHistory  # noqa: E402

MAX_LAYER_LINES = 24  # a ResNet50 has 161 trainable tensors: plot the largest few, name them in a legend


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_debugger(history: TensorHistory, out_dir: Path) -> list[Path]:
    paths = []
    fig, ax = plt.subplots(figsize=(8, 4))
    if history.train_losses:
        ax.plot([s for s, _, _ in history.train_losses], [v for _, _, v in history.train_losses],
                lw=0.8, alpha=0.7, label="train (per step)")  # fmt: skip
    if history.epoch_train_losses:
        ax.plot([s for s, _, _ in history.epoch_train_losses], [v for _, _, v in history.epoch_train_losses],
                "s-", label="train (epoch mean)")  # fmt: skip
    if history.val_losses:
        ax.plot(
            [s for s, _, _ in history.val_losses], [v for _, _, v in history.val_losses], "o-", label="eval"
        )
    ax.set(xlabel="step", ylabel="loss", title="Loss")
    ax.legend()
    paths.append(_save(fig, out_dir / "loss.png"))

    if history.layer_stats:
        series: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for step, rows in history.layer_stats.items():
            for row in rows:
                steps, grads, weights = series.setdefault(row["layer"], ([], [], []))
                steps.append(step)
                grads.append(row["grad_norm"])
                weights.append(row["weight_norm"])
        largest = sorted(series, key=lambda name: -max(series[name][1], default=0.0))[:MAX_LAYER_LINES]
        for index, title in ((1, "Gradient norm per layer"), (2, "Weight norm per layer")):
            fig, ax = plt.subplots(figsize=(10, 5))
            for name in largest:
                ax.plot(series[name][0], series[name][index], lw=1, label=name)
            ax.set_yscale("symlog", linthresh=1e-8)
            ax.set(
                xlabel="step", ylabel="L2 norm", title=f"{title} (largest {len(largest)} of {len(series)})"
            )
            ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
            stem = "grad_norms" if index == 1 else "weight_norms"
            paths.append(_save(fig, out_dir / f"{stem}.png"))
    return paths
