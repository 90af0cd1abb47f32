"""TensorBoard beyond scalars, at the end of a run (`logger=tensorboard`).

The IMAGES tab gets the test split's confusion matrix (the evaluation report's own confusion_matrix.png) and
a grid of test images with their predicted and true classes (the per-image answers the evaluation already
holds: nothing is predicted again). The HPARAMS tab gets the run's settings with its final val/test metrics:
conf/logger/tensorboard.yaml turns off Lightning's placeholder `hp_metric`, so only real figures show.
Weight and gradient histograms come from the debugger (dogbreed.diagnostics.debugger, `debugger=on`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from dogbreed.data.images import load_rgb
from dogbreed.modeldir.format import display_name
from dogbreed.tracking.evaluation_page import Outcome

CONFUSION_TAG = "test/confusion_matrix"
PREDICTIONS_TAG = "test/predictions"
GRID_IMAGES = 32  # mistakes first, then right answers, in the test split's order
GRID_COLUMNS = 8
# The metrics the HPARAMS tab shows, under their own tags so that the training curves keep their points.
HPARAM_METRICS = {
    "val/loss": "hp/val_loss",
    "val/acc": "hp/val_acc",
    "test/loss": "hp/test_loss",
    "test/acc": "hp/test_acc",
    "mean_class_accuracy": "hp/mean_class_accuracy",
}


def tensorboard_loggers(loggers: Iterable[Logger]) -> list[TensorBoardLogger]:
    return [logger for logger in loggers if isinstance(logger, TensorBoardLogger)]


def finish_tensorboard(
    loggers: Iterable[Logger],
    evaluation_dir: str | Path,
    outcomes: Sequence[Outcome] | None,
    class_names: Sequence[str],
    hparams: Mapping[str, Any],
    summary: Mapping[str, Any],
    step: int = 0,
) -> None:
    """Log the confusion matrix, the prediction grid and the hparams with the final metrics; close."""
    boards = tensorboard_loggers(loggers)
    if not boards:
        return
    confusion_png = Path(evaluation_dir) / "confusion_matrix.png"
    confusion = np.asarray(load_rgb(confusion_png)) if confusion_png.is_file() else None
    grid = prediction_grid(outcomes, class_names) if outcomes else None
    metrics = {tag: float(summary[k]) for k, tag in HPARAM_METRICS.items() if summary.get(k) is not None}
    for board in boards:
        if confusion is not None:
            board.experiment.add_image(CONFUSION_TAG, confusion, step, dataformats="HWC")
        if grid is not None:
            board.experiment.add_image(PREDICTIONS_TAG, grid, step, dataformats="HWC")
        board.log_hyperparams(dict(hparams), metrics)
        board.finalize("success")  # Lightning closed the writer after testing; this closes what was reopened


def grid_outcomes(outcomes: Sequence[Outcome], size: int = GRID_IMAGES) -> list[Outcome]:
    wrong = [o for o in outcomes if o.true != o.predicted]
    right = [o for o in outcomes if o.true == o.predicted]
    return [*wrong, *right][:size]


def prediction_grid(outcomes: Sequence[Outcome], class_names: Sequence[str], thumb: int = 96) -> np.ndarray:
    """An RGB array: up to GRID_IMAGES test images, each titled with its predicted and true class (green
    when right, red when wrong) and the predicted class's probability."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in containers
    import matplotlib.pyplot as plt

    shown = grid_outcomes(outcomes)
    rows = -(-len(shown) // GRID_COLUMNS)
    fig, axes = plt.subplots(rows, GRID_COLUMNS, figsize=(GRID_COLUMNS * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, outcome in zip(axes.flat, shown, strict=False):
        image = load_rgb(outcome.path, draft_size=thumb)
        image.thumbnail((thumb, thumb))
        ax.imshow(np.asarray(image))
        predicted, true = (display_name(class_names[i]) for i in (outcome.predicted, outcome.true))
        ax.set_title(
            f"{predicted} {outcome.probability:.0%}\ntrue: {true}",
            fontsize=7,
            color="green" if outcome.predicted == outcome.true else "red",
        )
    fig.tight_layout()
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return pixels
