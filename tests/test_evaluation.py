"""The evaluation report from a known confusion matrix."""

from __future__ import annotations

import csv

import pytest
import torch

from dogbreed.data.preprocessing import preprocessing_for
from dogbreed.model.network import build_network
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model
from dogbreed.tracking.evaluation_page import REPORT_FILE, Outcome, confused_classes
from dogbreed.training.evaluation import write_evaluation_report
from tests.images import gradient, jpeg_bytes


def test_report_tables_and_image(tmp_path):
    names = ["001.Beagle", "002.Boxer", "003.Poodle"]
    confusion = torch.tensor([[8, 2, 0], [0, 5, 5], [0, 0, 4]])
    summary = write_evaluation_report(confusion, names, tmp_path)
    assert summary["accuracy"] == 17 / 24
    assert summary["mean_class_accuracy"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    with open(tmp_path / "per_class_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["class"], r["support"], r["correct"], r["accuracy"]) for r in rows] == [
        ("001.Beagle", "10", "8", "0.8000"),
        ("002.Boxer", "10", "5", "0.5000"),
        ("003.Poodle", "4", "4", "1.0000"),
    ]
    with open(tmp_path / "confused_pairs.csv") as f:
        pairs = list(csv.DictReader(f))
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("002.Boxer", "003.Poodle", "5"),
        ("001.Beagle", "002.Boxer", "2"),
    ]
    png = (tmp_path / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_report_page_sorts_classes_weakest_first_and_shows_the_telling_photos(tmp_path):
    names = ["001.Beagle", "002.Boxer", "003.Poodle"]
    confusion = torch.tensor([[8, 2, 0], [0, 5, 5], [0, 0, 4]])
    torch.manual_seed(0)
    model_dir = export_model(
        build_network("resnet18", 3, None),
        tmp_path / "model",
        arch="resnet18",
        class_names=names,
        preprocessing=preprocessing_for("resnet18", 32),
    )
    photos = []
    for i in range(6):
        photos.append(tmp_path / f"photo{i}.jpg")
        photos[-1].write_bytes(jpeg_bytes(gradient((40 + 8 * i, 36))))
    outcomes = [
        Outcome(str(photos[0]), 0, 1, 0.55),
        Outcome(str(photos[1]), 1, 2, 0.97),  # the most confident mistake
        Outcome(str(photos[2]), 0, 0, 0.40),  # the least confident right answer
        Outcome(str(photos[3]), 2, 2, 0.99),
        Outcome(str(photos[4]), 1, 1, 0.61),
        Outcome(str(photos[5]), 2, 2, 0.90),
    ]
    write_evaluation_report(
        confusion, names, tmp_path / "report", outcomes=outcomes, model=load_model(model_dir)
    )
    page = (tmp_path / "report" / REPORT_FILE).read_text()
    chart = page[page.index("<svg") : page.index("</svg>")]
    assert chart.index("Boxer") < chart.index("Beagle") < chart.index("Poodle")  # 50 %, 80 %, 100 %
    assert chart.count("<rect") == 3 and "Boxer: 5 of 10 right" in chart and "50.0% (5/10)" in chart
    mistakes = page[page.index("most confident mistakes") : page.index("least confident right")]
    assert mistakes.index("photo1.jpg") < mistakes.index("photo0.jpg")
    assert "Boxer, predicted Poodle (97.0%)" in mistakes
    unsure = page[page.index("least confident right") :]
    assert unsure.index("photo2.jpg") < unsure.index("photo4.jpg") < unsure.index("photo5.jpg")
    assert page.count("src='data:image/jpeg;base64,") == 2 * len(outcomes)  # photo and heat map each
    assert "http://" not in page and "https://" not in page  # nothing is fetched from anywhere


def test_confusion_of_many_classes_shows_the_classes_of_the_most_confused_pairs():
    confusion = torch.eye(40, dtype=torch.long) * 10
    confusion[3, 17] = 6
    confusion[25, 3] = 4
    confusion[30, 31] = 2
    assert confused_classes(confusion, limit=20)[:5] == [3, 17, 25, 30, 31]
    assert confused_classes(confusion, limit=4) == [3, 17, 25, 30]
    assert confused_classes(confusion[:5, :5], limit=20) == [0, 1, 2, 3, 4]  # few classes: all of them
