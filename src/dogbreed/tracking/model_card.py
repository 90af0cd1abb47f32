"""model/README.md: a model card written with every exported model, so it travels in model.tar.gz.

It says what the model is, what data and recipe made it, how well it did on the test split (its weakest
classes and most confused pairs too), how to call it and where it should not be trusted. The evaluation
report page (evaluation.html) is copied beside it, and model_card.json holds the figures a program shows
(the serving page reads it with read_card_data).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dogbreed.modeldir.format import display_name
from dogbreed.modeldir.reader import read_model_description
from dogbreed.tracking.evaluation_page import REPORT_FILE
from dogbreed.tracking.git_state import describe

CARD_FILE = "README.md"
CARD_DATA_FILE = "model_card.json"
CONFUSION_IMAGE = "confusion_matrix.png"
# The figures of model_card.json: the metric's name in metrics.json -> its key there.
CARD_METRICS = {
    "test/acc": "test_accuracy",
    "test/acc_top5": "test_top5_accuracy",
    "mean_class_accuracy": "mean_class_accuracy",
    "val/acc": "validation_accuracy",
}
WEAKEST = 10
CONFUSED = 10
CLASSES_LISTED = 30
TRANSFER_MODES = {
    "head": "the pretrained backbone frozen, only the new classification head trained",
    "layer4": "the last residual block and the new head trained, the rest frozen",
    "all": "every layer trained (full fine-tuning)",
}


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(number) else f"{100 * number:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def weakest_classes(evaluation_dir: Path, count: int = WEAKEST) -> list[dict[str, str]]:
    rows = [r for r in _rows(evaluation_dir / "per_class_accuracy.csv") if r["accuracy"] != "nan"]
    return sorted(rows, key=lambda r: (float(r["accuracy"]), r["class"]))[:count]


def write_model_card(
    model_dir: str | Path,
    *,
    model_cfg: Mapping[str, Any],
    data_cfg: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any],
    manifest: Mapping[str, Any],
    evaluation_dir: str | Path,
) -> Path:
    """Write <model_dir>/README.md and model_card.json (and copy the confusion matrix image and the
    evaluation report beside them); return the README's path."""
    model_dir, evaluation_dir = Path(model_dir), Path(evaluation_dir)
    described = {**read_model_description(model_dir).config, "data": trained_on(data_cfg or {})}
    copied = {}
    for name in (CONFUSION_IMAGE, REPORT_FILE):
        copied[name] = (evaluation_dir / name).is_file()
        if copied[name]:
            shutil.copyfile(evaluation_dir / name, model_dir / name)
    sections = [
        _what_it_is(described, model_cfg),
        _data(described, manifest),
        _recipe(manifest, metrics),
        _results(metrics, evaluation_dir, has_image=copied[CONFUSION_IMAGE], has_report=copied[REPORT_FILE]),
        _how_to_call(),
        _limits(described, manifest),
    ]
    path = model_dir / CARD_FILE
    path.write_text("\n\n".join("\n".join(section) for section in sections) + "\n")
    card_data = {
        "title": _title(described),
        "arch": described["arch"],
        "num_classes": described["num_classes"],
        "created": manifest.get("created"),
        "code": describe(manifest.get("git") or {}),
        **{key: _number(metrics.get(name)) for name, key in CARD_METRICS.items()},
        "evaluation_report": REPORT_FILE if copied[REPORT_FILE] else None,
    }
    (model_dir / CARD_DATA_FILE).write_text(json.dumps(card_data, indent=2))
    return path


def read_card_data(model_dir: str | Path) -> dict[str, Any]:
    """model_card.json of a model folder, or {} for a model exported without one (no evaluation)."""
    path = Path(model_dir) / CARD_DATA_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def trained_on(data_cfg: Mapping[str, Any]) -> dict[str, str]:
    """What the card says of the data: the embedded generated shapes, the dog-breed data set (its folder is
    dogImages, as the download makes it), or a user's own folder, named by its last part."""
    root = str(data_cfg.get("root") or "").rstrip("/")
    if data_cfg.get("synthetic"):
        return {"kind": "synthetic", "root": root}
    return {"kind": "dog-breeds" if Path(root).name == "dogImages" else "own", "root": Path(root).name}


def _title(described: Mapping[str, Any]) -> str:
    kind = (described.get("data") or {}).get("kind")
    name = "Dog-breed classifier" if kind == "dog-breeds" else "Image classifier"
    return f"{name}: {described['arch']}, {described['num_classes']} classes"


def _purpose(described: Mapping[str, Any]) -> str:
    data, classes = described.get("data") or {}, described["num_classes"]
    if data.get("kind") == "synthetic":
        return (
            f"A smoke-test model: trained on the embedded generated data set (a coloured shape on a plain "
            f"background, {classes} classes), it shows that training, export and serving work; it knows "
            "nothing of dogs or photos."
        )
    if data.get("kind") == "dog-breeds":
        return f"An image classifier that names the dog breed in a photo, one of {classes} breeds."
    return (
        f"An image classifier that names which of its {classes} classes an image shows, trained on the "
        f"images in `{data.get('root') or 'its data folder'}`."
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _what_it_is(described: Mapping[str, Any], model_cfg: Mapping[str, Any]) -> list[str]:
    arch = described["arch"]
    weights = model_cfg.get("weights")
    started = (
        f"torchvision's `{weights}` ImageNet weights" if weights else "random initialisation (no pretraining)"
    )
    freeze = str(model_cfg.get("freeze"))
    head = (
        f"Linear({described.get('head_hidden')})-ReLU-Dropout({described.get('dropout')})-Linear"
        if described.get("head_hidden")
        else "one Linear layer"
    )
    prep = described.get("preprocessing") or {}
    return [
        f"# {_title(described)}",
        "",
        _purpose(described),
        "",
        "## The model",
        f"- Architecture: {arch} with a new classification head ({head}).",
        f"- Started from: {started}.",
        f"- Transfer mode: `freeze={freeze}`: {TRANSFER_MODES.get(freeze, freeze)}.",
        f"- Input: RGB images resized to {prep.get('resize_size')} px and centre-cropped to "
        f"{prep.get('crop_size')} px, normalised with mean {prep.get('mean')} and std {prep.get('std')}.",
        "- Files: `weights.pt` (a plain state dict), `model.json` (architecture, class names, preprocessing,"
        " and the run manifest), `code/` (the SageMaker inference entry point).",
    ]


def _data(described: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    data = manifest.get("data") or {}
    names = [display_name(c) for c in described["class_names"]]
    listed = ", ".join(names[:CLASSES_LISTED])
    if len(names) > CLASSES_LISTED:
        listed += f", and {len(names) - CLASSES_LISTED} more (all in `model.json`)"
    splits = data.get("splits") or {}
    rows = [
        (name, s.get("images"), s.get("classes"), f"`{str(s.get('sha256'))[:16]}`")
        for name, s in splits.items()
    ]
    return [
        "## Data",
        f"- Classes ({len(names)}): {listed}.",
        f"- Data manifest hash: `{data.get('sha256')}` (the images' relative paths and sizes, per split, "
        "and the class list; the same data gives the same hash).",
        "",
        *_table(("split", "images", "classes", "hash"), rows),
    ]


def _recipe(manifest: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    overrides = manifest.get("overrides") or []
    lines = [
        "## Recipe",
        f"- Code: {describe(manifest.get('git') or {})}.",
        f"- Trained for {metrics.get('epochs', 'n/a')} epochs"
        + (
            f" in {metrics['fit_seconds']:.0f} s"
            if isinstance(metrics.get("fit_seconds"), int | float)
            else ""
        )
        + "; the model is the checkpoint with the best "
        + f"`{metrics.get('monitor') or 'final epoch'}`.",
        "- Settings that differ from the defaults (Hydra overrides):",
        "",
        "```",
        *(overrides or ["(none: the default configuration)"]),
        "```",
        "",
        "The full resolved configuration is `config.yaml` in the run directory; `manifest.json` there (and"
        " under `manifest` in `model.json`) records the library versions and the machine.",
    ]
    return lines


def _results(
    metrics: Mapping[str, Any], evaluation_dir: Path, has_image: bool, has_report: bool
) -> list[str]:
    rows = [
        ("test accuracy", _percent(metrics.get("test/acc"))),
        ("test top-5 accuracy", _percent(metrics.get("test/acc_top5"))),
        ("mean class accuracy (test)", _percent(metrics.get("mean_class_accuracy"))),
        ("validation accuracy", _percent(metrics.get("val/acc"))),
    ]
    rows = [row for row in rows if row[1] != "n/a"]  # top-5 exists only with more than five classes
    lines = ["## Results", "", *_table(("metric", "value"), rows)]
    if has_report:
        lines += [
            "",
            f"The [evaluation report]({REPORT_FILE}) shows the accuracy of every class, the most confused"
            " part of the confusion matrix and the test photos it got most confidently wrong and least"
            " confidently right, with their Grad-CAM heat maps.",
        ]
    weakest = weakest_classes(evaluation_dir)
    if weakest:
        lines += ["", f"### The {len(weakest)} weakest classes (test split)", ""]
        lines += _table(
            ("class", "accuracy", "correct / images"),
            [
                (display_name(r["class"]), _percent(r["accuracy"]), f"{r['correct']} / {r['support']}")
                for r in weakest
            ],
        )
    pairs = _rows(evaluation_dir / "confused_pairs.csv")[:CONFUSED]
    if pairs:
        lines += ["", "### Most confused pairs (test split)", ""]
        lines += _table(
            ("true class", "predicted as", "images", "share of the true class"),
            [
                (
                    display_name(p["true"]),
                    display_name(p["predicted"]),
                    p["count"],
                    _percent(p["share_of_true"]),
                )
                for p in pairs
            ],
        )
    if has_image:
        lines += ["", f"![Confusion matrix of the test split]({CONFUSION_IMAGE})"]
    return lines


def _how_to_call() -> list[str]:
    return [
        "## How to use it",
        "In Python (this folder is the model directory):",
        "",
        "```python",
        "from dogbreed.modeldir.reader import load_model",
        'model = load_model("model")',
        'print(model.predict(["dog.jpg"], topk=3))',
        "```",
        "",
        "As a local server speaking SageMaker's container contract, then a request:",
        "",
        "```bash",
        "python serve/deploy.py backend=local model_dir=model",
        'curl -s -H "Content-Type: image/jpeg" --data-binary @dog.jpg http://127.0.0.1:8080/invocations',
        "```",
        "",
        "As a SageMaker real-time endpoint (this folder is packed as model.tar.gz with `code/`):",
        "",
        "```bash",
        "python serve/deploy.py backend=sagemaker model_dir=model",
        "python serve/predict.py dog.jpg --endpoint <endpoint name>",
        "```",
    ]


def _limits(described: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    data = manifest.get("data") or {}
    test_images = ((data.get("splits") or {}).get("test") or {}).get("images")
    lines = [
        "## Limits",
        f"- It knows only the {described['num_classes']} breeds listed in `model.json` and always answers one"
        " of them: a cat, a mixed breed or a photo with no dog still gets a breed. Low top-1 probabilities"
        " are a hint, not a detector.",
        f"- The accuracy figures come from {test_images or 'the'} test images of the same data set as the"
        " training images; photos that differ (lighting, framing, other cameras, other breeds' look-alikes)"
        " may do worse. The weakest classes above are where to expect errors.",
        "- Per-class figures on small test splits are noisy: a class with a few test images moves a lot with"
        " one image.",
    ]
    if not (manifest.get("git") or {}).get("commit"):
        lines.append("- It was trained from code outside a git checkout: the exact code version is unknown.")
    return lines
