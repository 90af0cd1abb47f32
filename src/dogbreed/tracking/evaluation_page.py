"""evaluation.html: the evaluation report as one page people read, with nothing fetched from anywhere.

Per-class accuracy as a bar chart sorted from the weakest class up, the confusion matrix (restricted to
the classes of the most confused pairs when there are too many to read), and a gallery of the most
confident mistakes and the least confident right answers: each photo as the network saw it, beside its
Grad-CAM heat map for the predicted class. Charts are inline SVG and HTML, thumbnails are data URLs, so the
file can be copied (into the model folder, an MLflow run, an e-mail) and still opens whole.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from dogbreed.model.gradcam import gradcam, network_view, overlay
from dogbreed.modeldir.format import display_name
from dogbreed.modeldir.predictor import BreedModel

REPORT_FILE = "evaluation.html"
GALLERY_SIZE = 8  # photos in each half of the gallery
THUMBNAIL = 128  # pixels on a side
READABLE_CLASSES = 20  # the confusion matrix shows at most this many classes as a table
GRADCAM_CHUNK = 8  # images per Grad-CAM pass: bounds the memory of the backward pass


@dataclass(frozen=True)
class Outcome:
    """One test image's answer: its file, true and predicted class indices, the top-1 probability."""

    path: str
    true: int
    predicted: int
    probability: float


@dataclass(frozen=True)
class GalleryEntry:
    outcome: Outcome
    photo: str  # data URL of the network's view of the photo
    heatmap: str  # data URL of the same view with the heat map of the predicted class over it


def pick_gallery(outcomes: Sequence[Outcome], size: int = GALLERY_SIZE) -> tuple[list, list]:
    """(the `size` most confident mistakes, the `size` least confident right answers)."""
    wrong = sorted((o for o in outcomes if o.true != o.predicted), key=lambda o: (-o.probability, o.path))
    right = sorted((o for o in outcomes if o.true == o.predicted), key=lambda o: (o.probability, o.path))
    return wrong[:size], right[:size]


def _data_url(image: Image.Image) -> str:
    out = io.BytesIO()
    image.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC).save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def draw_gallery(model: BreedModel, outcomes: Sequence[Outcome]) -> list[GalleryEntry]:
    """Thumbnails and Grad-CAM overlays of `outcomes`, decoded and cropped as the model does."""
    entries = []
    for start in range(0, len(outcomes), GRADCAM_CHUNK):
        chunk = outcomes[start : start + GRADCAM_CHUNK]
        images = [model.decode(o.path) for o in chunk]
        cams = gradcam(model.net, model.preprocess(images), [o.predicted for o in chunk])
        for outcome, image, cam in zip(chunk, images, cams, strict=True):
            view = network_view(image, model.preprocessing)
            entries.append(GalleryEntry(outcome, _data_url(view), _data_url(overlay(view, cam))))
    return entries


def write_report_page(
    path: str | Path,
    *,
    summary: dict,
    confusion: torch.Tensor,
    class_names: list[str],
    gallery: tuple[list[GalleryEntry], list[GalleryEntry]] | None,
) -> Path:
    """Write the page; `gallery` None says the run kept no per-image answers to show."""
    path = Path(path)
    sections = [
        _head(summary, confusion),
        _per_class_chart(confusion, class_names),
        _confusion_table(confusion, class_names),
        _gallery(gallery, class_names),
    ]
    path.write_text(PAGE.format(body="\n".join(sections)), encoding="utf-8")
    return path


def _head(summary: dict, confusion: torch.Tensor) -> str:
    images, classes = int(confusion.sum()), len(confusion)
    return (
        f"<h1>Evaluation report</h1><p class='lead'>{images} test images, {classes} classes: accuracy "
        f"<b>{_percent(summary.get('accuracy'))}</b>, mean class accuracy "
        f"<b>{_percent(summary.get('mean_class_accuracy'))}</b>.</p>"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"


ROW, LABEL_WIDTH, BAR_WIDTH = 16, 230, 400  # the bar chart's geometry, in pixels


def _bar(row: int, name: str, correct: int, support: int) -> str:
    """One class's bar: its name, a bar as long as its accuracy (red to green), the figures."""
    accuracy, y = correct / support, 4 + row * ROW
    figures = f"{_percent(accuracy)} ({correct}/{support})"
    return (
        f"<g class='bar'><text class='name' x='{LABEL_WIDTH - 6}' y='{y + 11}' text-anchor='end'>"
        f"{name}</text>"
        f"<rect x='{LABEL_WIDTH}' y='{y + 1}' width='{max(1.0, BAR_WIDTH * accuracy):.1f}' height='{ROW - 3}'"
        f" fill='hsl({round(120 * accuracy)},55%,45%)'><title>{name}: {correct} of {support} right</title>"
        f"</rect><text class='value' x='{LABEL_WIDTH + BAR_WIDTH + 6}' y='{y + 11}'>{figures}</text></g>"
    )


def _per_class_chart(confusion: torch.Tensor, class_names: list[str]) -> str:
    support, correct = confusion.sum(dim=1).tolist(), confusion.diag().tolist()
    weakest_first = sorted((correct[i] / support[i], i) for i in range(len(class_names)) if support[i])
    bars = [
        _bar(row, html.escape(display_name(class_names[i])), correct[i], support[i])
        for row, (_, i) in enumerate(weakest_first)
    ]
    missing = [display_name(c) for i, c in enumerate(class_names) if not support[i]]
    note = f"<p>No test images: {html.escape(', '.join(missing))}.</p>" if missing else ""
    width, height = LABEL_WIDTH + BAR_WIDTH + 120, ROW * len(bars) + 8
    return (
        "<section><h2 id='per-class'>Accuracy per class, weakest first</h2>"
        f"<svg class='chart' role='img' aria-labelledby='per-class' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>{''.join(bars)}</svg>{note}</section>"
    )


def confused_classes(confusion: torch.Tensor, limit: int = READABLE_CLASSES) -> list[int]:
    """Every class when there are at most `limit`; else the classes of the most confused pairs, in the
    order the pairs rank, until `limit` are chosen."""
    n = len(confusion)
    if n <= limit:
        return list(range(n))
    off = confusion.clone()
    off.fill_diagonal_(0)
    chosen: list[int] = []
    counts, flat = off.flatten().sort(descending=True)
    for count, index in zip(counts.tolist(), flat.tolist(), strict=True):
        if count == 0 or len(chosen) >= limit:
            break
        for i in divmod(index, n):
            if i not in chosen and len(chosen) < limit:
                chosen.append(i)
    return chosen


def _confusion_table(confusion: torch.Tensor, class_names: list[str]) -> str:
    chosen = confused_classes(confusion)
    if not chosen:
        return "<section><h2>Confusion matrix</h2><p>No mistakes: nothing was confused.</p></section>"
    n = len(class_names)
    support = confusion.sum(dim=1)
    heading = (
        "Confusion matrix"
        if len(chosen) == n
        else f"The most confused part of the confusion matrix ({len(chosen)} of {n} classes)"
    )
    names = [html.escape(display_name(class_names[i])) for i in chosen]
    header = "".join(f"<th scope='col'><span>{name}</span></th>" for name in names)
    rows = []
    for i, name in zip(chosen, names, strict=True):
        cells = []
        for j in chosen:
            count = int(confusion[i, j])
            kind = "hit" if i == j else f"miss s{_shade(count, int(support[i]))}"
            cells.append(
                f"<td class='{kind}' title='{name} as "
                f"{html.escape(display_name(class_names[j]))}: {count}'>{count or ''}</td>"
            )
        rows.append(f"<tr><th scope='row'>{name}</th>{''.join(cells)}</tr>")
    return (
        f"<section><h2>{heading}</h2><p>Rows: the true class; columns: the class predicted; each cell counts "
        "test images, darker for a larger share of the row's images.</p>"
        f"<div class='scroll'><table class='confusion'><thead><tr><td></td>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _shade(count: int, support: int) -> int:
    """0 for no image, then 1-3 for up to a third, two thirds, all of the row's images."""
    return 0 if not count else 1 + min(2, int(3 * count / max(1, support)))


def _gallery(gallery: tuple[list[GalleryEntry], list[GalleryEntry]] | None, class_names: list[str]) -> str:
    if gallery is None:
        return (
            "<section><h2>Gallery</h2><p>This evaluation kept no per-image answers (a multi-process "
            "run, or no exported model): "
            "<code>python -m dogbreed.training.evaluation MODEL_DIR SPLIT_DIR</code> "
            "draws the gallery.</p></section>"
        )
    mistakes, unsure = gallery
    return (
        "<section><h2>Gallery</h2><p>Each photo as the network sees it (resized and centre-cropped), and "
        "its Grad-CAM heat map for the predicted breed: red where the evidence for it lies.</p>"
        + _figures("The most confident mistakes", "mistakes", mistakes, class_names)
        + _figures("The least confident right answers", "unsure", unsure, class_names)
        + "</section>"
    )


def _figures(title: str, kind: str, entries: list[GalleryEntry], class_names: list[str]) -> str:
    if not entries:
        return f"<h3>{title}</h3><p>None.</p>"
    figures = []
    for entry in entries:
        o = entry.outcome
        true = html.escape(display_name(class_names[o.true]))
        predicted = html.escape(display_name(class_names[o.predicted]))
        said = f"{true}, predicted {predicted}" if o.true != o.predicted else f"{true}, predicted right"
        figures.append(
            f"<figure class='example'><img src='{entry.photo}' alt='Test photo of a {true}' "
            f"width='{THUMBNAIL}' height='{THUMBNAIL}'><img src='{entry.heatmap}' alt='Heat map of the "
            f"evidence for {predicted} over the same photo' width='{THUMBNAIL}' height='{THUMBNAIL}'>"
            f"<figcaption>{said} ({_percent(o.probability)})<br><small>"
            f"{html.escape(os.path.join(*Path(o.path).parts[-2:]))}</small></figcaption></figure>"
        )
    return f"<h3>{title}</h3><div class='gallery {kind}'>{''.join(figures)}</div>"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation report</title><link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem;
  color: #1b1b1b; }}
h1 {{ font-size: 1.6rem; }} h2 {{ margin-top: 2rem; font-size: 1.25rem; }}
.lead {{ font-size: 1.05rem; }}
svg.chart {{ max-width: 100%; height: auto; font-size: 11px; }} svg.chart text {{ fill: #1b1b1b; }}
.scroll {{ overflow-x: auto; }}
table.confusion {{ border-collapse: collapse; font-size: 12px; }}
table.confusion th {{ font-weight: normal; text-align: right; padding: 0 .4rem; white-space: nowrap; }}
table.confusion thead th {{ vertical-align: bottom; text-align: left; }}
table.confusion thead th span {{ writing-mode: vertical-rl; transform: rotate(180deg); }}
table.confusion td {{ width: 1.8rem; height: 1.8rem; text-align: center; border: 1px solid #e4e4e4; }}
td.s1 {{ background: #fdd9c4; }} td.s2 {{ background: #f59a6d; }}
td.s3 {{ background: #c8421b; color: #fff; }}
td.hit {{ background: #e3f1e3; }} td.hit:not(:empty) {{ font-weight: 600; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure.example {{ margin: 0; width: 264px; }} figure.example img {{ margin-right: 4px; border-radius: 3px; }}
figcaption {{ font-size: 13px; }} figcaption small {{ color: #555; word-break: break-all; }}
</style></head>
<body><main>
{body}
</main></body></html>
"""
