"""The evaluation report from a known confusion matrix."""

from __future__ import annotations

import csv

import pytest
import torch

from dogbreed.evaluation import write_evaluation_report


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
