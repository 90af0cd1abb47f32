"""SageMaker Debugger inside the job: an smdebug hook on the trainable modules and the loss.

SageMaker writes the job's DebuggerHookConfig to <base>/input/config/debughookconfig.json; smdebug reads it
(`Hook.create_from_json_file`). smdebug is optional and heavy (numpy<2.3, protobuf 3.20.3): when it is absent
the run says so once and trains on. Hooks on frozen parameters crash smdebug (sagemaker-python-sdk #1401), so
only modules whose parameters all train are registered.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from torch import nn

log = logging.getLogger(__name__)


def trainable_modules(root: nn.Module) -> list[nn.Module]:
    """The largest submodules whose parameters all require grad (frozen ones are left out)."""
    params = list(root.parameters(recurse=True))
    if params and all(p.requires_grad for p in params):
        return [root]
    found: list[nn.Module] = []
    for child in root.children():
        found += trainable_modules(child)
    return found


class SmdebugHookCallback(pl.Callback):
    """Registers the smdebug hook at fit start; keeps its mode (TRAIN/EVAL/PREDICT) in step with Lightning."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self.hook = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.hook is not None or stage != "fit":
            return
        from smdebug.pytorch import Hook

        self.hook = Hook.create_from_json_file(str(self.config_file))
        modules = trainable_modules(pl_module.net)
        for module in modules:
            self.hook.register_module(module)
        self.hook.register_loss(pl_module.criterion)
        log.info("smdebug hook registered on %d trainable module(s) and the loss", len(modules))

    def _set_mode(self, mode_name: str) -> None:
        if self.hook is not None:
            from smdebug import modes

            self.hook.set_mode(getattr(modes, mode_name))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set_mode("TRAIN")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set_mode("EVAL")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set_mode("TRAIN")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set_mode("PREDICT")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.hook is not None and stage == "test":
            self.hook.close()


def debugger_callbacks(base_dir: Path) -> list[pl.Callback]:
    """[SmdebugHookCallback] when the job has a hook config and smdebug imports, else [] (saying why once)."""
    config_file = base_dir / "input" / "config" / "debughookconfig.json"
    if not config_file.is_file():
        return []
    try:
        import smdebug.pytorch  # noqa: F401
    except Exception as e:  # ImportError, or smdebug failing against this numpy/protobuf
        log.warning(
            "the job has a Debugger hook config but smdebug cannot be imported (%s): training without it", e
        )
        return []
    return [SmdebugHookCallback(config_file)]
