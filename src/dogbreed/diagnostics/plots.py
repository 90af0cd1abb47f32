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
        ax.plot(
            [s for s, _, _ in history.train_losses],
            [v for _, _, v in history.train_losses],
            lw=0.8,
            alpha=0.7,
            label="train (per step)",
        )
    if history.epoch_train_losses:
        ax.plot(
            [s for s, _, _ in history.epoch_train_losses],
            [v for _, _, v in history.epoch_train_losses],
            "s-",
            label="train (epoch mean)",
        )
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
                ax.plot(series[name][0], series[name][index], ".-", lw=1, ms=3, label=name)
            ax.set_yscale("symlog", linthresh=1e-8)
            ax.set(
                xlabel="step", ylabel="L2 norm", title=f"{title} (largest {len(largest)} of {len(series)})"
            )
            ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
            stem = "grad_norms" if index == 1 else "weight_norms"
            paths.append(_save(fig, out_dir / f"{stem}.png"))
    return paths


def plot_profiler(samples: list, steps: list, t0: float, out_dir: Path) -> list[Path]:
    """System utilisation over time (CPU per core, memory, I/O wait, GPU) and step times split into
    data wait and compute."""
    paths = []
    if samples:
        times = [s.time - t0 for s in samples]
        has_gpu = any(s.gpu_util_percent is not None for s in samples)
        fig, axes = plt.subplots(3 if has_gpu else 2, 1, figsize=(10, 8 if has_gpu else 6), sharex=True)
        cores = list(zip(*[s.cpu_per_core for s in samples], strict=False))
        for i, core in enumerate(cores):
            axes[0].plot(times, core, lw=0.7, alpha=0.6, label=f"cpu{i}" if len(cores) <= 16 else None)
        axes[0].plot(times, [s.cpu_percent for s in samples], "k-", lw=1.5, label="mean")
        axes[0].set(ylabel="CPU %", ylim=(0, 105), title="CPU utilisation per core")
        axes[0].legend(fontsize=6, ncol=4, loc="lower right")
        axes[1].plot(times, [s.memory_percent for s in samples], label="memory %")
        axes[1].plot(times, [s.iowait_percent for s in samples], label="CPU I/O wait %")
        if any(s.job_iowait_percent is not None for s in samples):
            job_io = [s.job_iowait_percent or 0 for s in samples]
            axes[1].plot(times, job_io, label="training job blocked on I/O %")
        disk = [s.disk_read_mb_s + s.disk_write_mb_s for s in samples]
        axes[1].plot(times, disk, label="disk MB/s")
        axes[1].set(ylabel="% or MB/s", title="Memory, I/O wait, disk throughput")
        axes[1].legend(fontsize=7)
        if has_gpu:
            axes[2].plot(times, [s.gpu_util_percent or 0 for s in samples], label="GPU util %")
            axes[2].plot(times, [s.gpu_memory_percent or 0 for s in samples], label="GPU memory %")
            axes[2].set(ylabel="%", ylim=(0, 105), title="GPU")
            axes[2].legend(fontsize=7)
        axes[-1].set_xlabel("seconds since fit start")
        paths.append(_save(fig, out_dir / "system_utilisation.png"))
    if steps:
        fig, ax = plt.subplots(figsize=(10, 4))
        index = [s.step for s in steps]
        ax.bar(index, [s.compute_s for s in steps], width=1.0, label="compute")
        ax.bar(
            index,
            [s.data_wait_s for s in steps],
            width=1.0,
            bottom=[s.compute_s for s in steps],
            label="data wait",
        )
        ax.set(xlabel="step", ylabel="seconds", title="Step time: compute and data wait")
        ax.legend()
        paths.append(_save(fig, out_dir / "step_times.png"))
    return paths
