"""BreedClassifier: the LightningModule that fine-tunes a ResNet with AdamW."""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from dogbreed.config.schema import ModelValues, check_freeze_has_weights, check_scheduler
from dogbreed.model.network import apply_freeze, build_network, frozen_batchnorm_eval


class BreedClassifier(pl.LightningModule):
    """Logs train/loss, train/acc, val/loss, val/acc(_top5), test/loss, test/acc(_top5)."""

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        # Defaults: config.schema.ModelValues, their one home (conf/model/*.yaml is checked against them).
        arch: str = ModelValues.arch,
        weights: str | None = ModelValues.weights,
        head_hidden: int | None = ModelValues.head_hidden,
        dropout: float = ModelValues.dropout,
        freeze: str = ModelValues.freeze,
        lr: float = ModelValues.lr,
        weight_decay: float = ModelValues.weight_decay,
        eps: float = ModelValues.eps,
        betas: Sequence[float] = ModelValues.betas,
        warmup_epochs: float = ModelValues.warmup_epochs,
        scheduler: str | None = ModelValues.scheduler,
        label_smoothing: float = ModelValues.label_smoothing,
        channels_last: bool = ModelValues.channels_last,
        allow_random_frozen_backbone: bool = ModelValues.allow_random_frozen_backbone,
        head_only: bool = False,
    ) -> None:
        super().__init__()
        check_scheduler(scheduler)
        check_freeze_has_weights(weights, freeze, allow_random_frozen_backbone)
        # head_only is how this run feeds the model, not a setting of the model: checkpoints leave it out.
        self.save_hyperparameters(ignore=["head_only"])
        # True when training feeds cached backbone features (feature_cache with model.freeze=head): only the
        # head runs; self.net stays the whole network, so checkpoints and the exported model are complete.
        self.head_only = head_only
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.net = build_network(arch, num_classes, weights, head_hidden, dropout)
        apply_freeze(self.net, freeze)
        if channels_last:
            # NHWC convolutions suit oneDNN on CPUs and tensor cores on GPUs (figures: docs/benchmarks.md).
            self.net = self.net.to(memory_format=torch.channels_last)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                for stage in ("train", "val", "test")
            }
            | {f"{stage}_acc_top5": MulticlassAccuracy(num_classes, top_k=top5) for stage in ("val", "test")}
        )
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.head_only:
            return self.net.fc(images)
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def on_train_epoch_start(self) -> None:
        frozen_batchnorm_eval(self.net)

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets)
        on_step = stage == "train"
        # Under DDP each process sees its shard: val/test losses are averaged across processes once per epoch
        # (the accuracies are torchmetrics objects, which gather themselves); train/loss stays per process.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(targets),
            sync_dist=not on_step,
        )
        acc = self.metrics[f"{stage}_acc"]
        acc(logits, targets)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets))
        if stage != "train" and self.hparams.num_classes > 5:
            top5 = self.metrics[f"{stage}_acc_top5"]
            top5(logits, targets)
            self.log(f"{stage}/acc_top5", top5, on_step=False, on_epoch=True, batch_size=len(targets))
        if stage == "test":
            probability, predicted = torch.softmax(logits.detach().float(), dim=1).max(dim=1)
            self.test_confusion.update(predicted, targets)
            self._test_outcomes.append((targets.cpu(), predicted.cpu(), probability.cpu()))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self._test_outcomes: list[tuple[torch.Tensor, ...]] = []

    def on_test_epoch_end(self) -> None:
        # compute() gathers across DDP processes, so every process must call it, here, inside the loop.
        self.last_test_confusion = self.test_confusion.compute().cpu()
        # Each image's (true, predicted, probability), in the test split's order: one process sees the
        # whole split; under DDP each sees a padded shard, which matches no file list, so none are kept.
        outcomes = [torch.cat(column) for column in zip(*self._test_outcomes, strict=True)]
        self.last_test_outcomes = tuple(outcomes) if outcomes and self.trainer.world_size == 1 else None

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=hp.lr, weight_decay=hp.weight_decay, eps=hp.eps, betas=tuple(hp.betas)
        )
        if not hp.scheduler and not hp.warmup_epochs:
            return optimizer
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(hp.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if hp.scheduler == "cosine":
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
