"""How a run uses the hardware at hand: precision, cuDNN/TF32 switches and optional torch.compile.

Everything here is chosen by config and defaults to the fast path of the machine: on a GPU bf16 autocast,
cuDNN autotuning and TF32 matmuls; on a CPU plain fp32 (CPU autocast is slower than fp32 for convolutions
on most CPUs without AMX).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dogbreed.config.errors import ConfigValueError
from dogbreed.hardware import available_cpus  # noqa: F401 - callers here and in training

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def uses_cuda(accelerator: str) -> bool:
    """Whether a Trainer with this `accelerator` setting will run on a CUDA device here."""
    return str(accelerator) in GPU_ACCELERATORS and torch.cuda.is_available()


def check_accelerator_available(accelerator: str) -> None:
    """trainer.accelerator=gpu (trainer=gpu) on a machine without a CUDA GPU: say so in one line."""
    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigValueError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is false): use trainer=cpu, or trainer.accelerator=auto to use a GPU "
            "only where there is one"
        )


def resolve_precision(precision: str | int, accelerator: str = "auto") -> str | int:
    """`trainer.precision=auto`: bf16 autocast on a GPU that has it (fp16 on older ones), fp32 elsewhere.

    Any other value is Lightning's own and passes through unchanged.
    """
    if str(precision) != "auto":
        return precision
    if not uses_cuda(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def configure_backends(cudnn_benchmark: bool = True) -> None:
    """On CUDA: let cuDNN benchmark convolution algorithms (our input sizes are fixed) and use TF32."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        torch.set_float32_matmul_precision("high")


def maybe_compile(net: nn.Module, settings: Mapping[str, Any] | None) -> None:
    """`compile.enabled=true`: compile the network in place with torch.compile (`nn.Module.compile`).

    Only the network: the Lightning steps around it hold torchmetrics updates that dynamo cannot trace, and
    compiling in place keeps the parameter names, so checkpoints and exported weights are unchanged. The
    first steps pay for compilation (tens of seconds for a ResNet50): worth it on long GPU runs.
    """
    if not settings or not settings.get("enabled"):
        return
    keys = ("backend", "mode", "dynamic", "fullgraph")
    options = {k: settings[k] for k in keys if settings.get(k) is not None}
    log.info("compiling the network: torch.compile(%s)", ", ".join(f"{k}={v}" for k, v in options.items()))
    net.compile(**options)
