"""Per-class accuracy, the confusion matrix image and the most confused pairs, for a run or a saved model,
as CSV files, a PNG and one HTML page (dogbreed.tracking.evaluation_page) with a gallery of telling
test photos.

`python -m dogbreed.training.evaluation MODEL_DIR SPLIT_DIR [--out DIR]` evaluates an exported model/ on any
ImageFolder split whose class folders match the model's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from dogbreed.modeldir.format import display_name
from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model
from dogbreed.tracking.evaluation_page import (
    REPORT_FILE,
    Outcome,
    draw_gallery,
    pick_gallery,
    write_report_page,
)


def write_evaluation_report(
    confusion: torch.Tensor,
    class_names: list[str],
    out_dir: str | Path,
    top_pairs: int = 20,
    outcomes: Sequence[Outcome] | None = None,
    model: BreedModel | None = None,
) -> dict:
    """Write per_class_accuracy.csv, confused_pairs.csv, confusion_matrix.png and evaluation.html; return a
    summary. The page's gallery needs each image's `outcomes` and the `model` that answered them.

    `confusion[i, j]` counts images of true class i predicted as class j.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = confusion.detach().cpu().long()
    write_per_class_accuracy(confusion, class_names, out_dir / "per_class_accuracy.csv")
    pairs = confused_pairs(confusion, class_names, top_pairs)
    with open(out_dir / "confused_pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["true", "predicted", "count", "share_of_true"])
        writer.writeheader()
        writer.writerows(pairs)
    _plot_confusion(confusion, class_names, out_dir / "confusion_matrix.png")
    summary = accuracy_summary(confusion, pairs)
    gallery = None
    if outcomes is not None and model is not None:
        mistakes, unsure = pick_gallery(outcomes)
        drawn = draw_gallery(model, [*mistakes, *unsure])
        gallery = (drawn[: len(mistakes)], drawn[len(mistakes) :])
    write_report_page(
        out_dir / REPORT_FILE, summary=summary, confusion=confusion, class_names=class_names, gallery=gallery
    )
    return summary


def write_per_class_accuracy(confusion: torch.Tensor, class_names: list[str], path: Path) -> None:
    """One row a class: its test images (support), how many were right, and the share (nan: no images)."""
    support, correct = confusion.sum(dim=1), confusion.diag()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "class", "support", "correct", "accuracy"])
        for i, name in enumerate(class_names):
            acc = correct[i].item() / support[i].item() if support[i] else float("nan")
            writer.writerow([i, name, support[i].item(), correct[i].item(), f"{acc:.4f}"])


def confused_pairs(confusion: torch.Tensor, class_names: list[str], top_pairs: int) -> list[dict]:
    """The `top_pairs` most frequent (true, predicted) mistakes, most frequent first."""
    support = confusion.sum(dim=1)
    off_diagonal = confusion.clone()
    off_diagonal.fill_diagonal_(0)
    counts, flat = off_diagonal.flatten().sort(descending=True)
    pairs: list[dict] = []
    for count, index in zip(counts.tolist(), flat.tolist(), strict=True):
        if count == 0 or len(pairs) == top_pairs:
            break
        true, pred = divmod(index, len(class_names))
        pairs.append(
            {
                "true": class_names[true],
                "predicted": class_names[pred],
                "count": count,
                "share_of_true": round(count / support[true].item(), 4),
            }
        )
    return pairs


def accuracy_summary(confusion: torch.Tensor, pairs: list[dict]) -> dict:
    """Accuracy, mean per-class accuracy (classes with test images only) and the five most confused pairs."""
    support, correct = confusion.sum(dim=1), confusion.diag()
    total = support.sum().item()
    per_class = correct.float() / support.clamp(min=1).float()
    return {
        "accuracy": correct.sum().item() / total if total else float("nan"),
        "mean_class_accuracy": per_class[support > 0].mean().item() if total else float("nan"),
        "most_confused": pairs[:5],
    }


def run_outcomes(outcomes: tuple[torch.Tensor, ...] | None, datamodule: object) -> list[Outcome] | None:
    """A training run's test answers per image ((true, predicted, probability) tensors in the test
    split's order) matched to the split's files; None when there are none or they do not match."""
    samples = getattr(getattr(datamodule, "datasets", {}).get("test"), "samples", None)
    if outcomes is None or samples is None or len(samples) != len(outcomes[0]):
        return None
    columns = (column.tolist() for column in outcomes)
    return [
        Outcome(str(path), int(true), int(predicted), float(probability))
        for (path, _), true, predicted, probability in zip(samples, *columns, strict=True)
    ]


def _plot_confusion(confusion: torch.Tensor, class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in containers
    import matplotlib.pyplot as plt

    n = len(class_names)
    rows = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    side = min(30.0, max(5.0, n * 0.2))
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 60:  # more labels than that overlap into noise
        labels = [display_name(c) for c in class_names]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=max(4, 10 - n // 10))
        ax.set_yticks(range(n), labels, fontsize=max(4, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({int(confusion.sum())} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_model_dir(
    model_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict:
    """Run an exported model over an ImageFolder split and write the same report a training run writes,
    plus predictions.csv: each image's top-1 breed and probability, as `load_model().predict` and the
    servers answer for the same file (the model's own decoding and transform)."""
    from torch.utils.data import DataLoader

    from dogbreed.data.folders import BreedImageFolder

    model = load_model(model_dir, "cuda" if torch.cuda.is_available() else "cpu")
    names = model.class_names
    dataset = BreedImageFolder(
        split_dir, classes=names, transform=model.transform, draft_size=model.draft_size
    )
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    rows, outcomes = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        probabilities, predicted = model.probabilities(images).max(dim=1)
        confusion += torch.bincount(targets * len(names) + predicted, minlength=len(names) ** 2).reshape(
            confusion.shape
        )
        for target, top, probability in zip(
            targets.tolist(), predicted.tolist(), probabilities.tolist(), strict=True
        ):
            path = dataset.samples[len(rows)][0]
            rows.append([os.path.relpath(path, split_dir), names[target], names[top], f"{probability:.6f}"])
            outcomes.append(Outcome(path, target, top, probability))
    summary = write_evaluation_report(confusion, names, out_dir, outcomes=outcomes, model=model)
    with open(Path(out_dir) / "predictions.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "true", "predicted", "probability"], *rows])
    (Path(out_dir) / "evaluation.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dogbreed.training.evaluation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model_dir", help="an exported model/ directory")
    parser.add_argument("split_dir", help="an ImageFolder split, e.g. dogImages/test")
    parser.add_argument("--out", default="evaluation", help="where the report goes (default: ./evaluation)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    summary = evaluate_model_dir(args.model_dir, args.split_dir, args.out, args.batch_size)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
