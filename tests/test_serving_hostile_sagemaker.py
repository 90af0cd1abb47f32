"""The hostile requests of test_serving_hostile.py through the real sagemaker-pytorch-inference handler
service: the same status and the same short JSON body as the local server, no traceback, no paths."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from dogbreed.modeldir.archive import pack_model
from dogbreed.serving.app import create_app
from dogbreed.serving.settings import ServerSettings
from tests.conftest import ROOT
from tests.hostile_images import (
    black_png,
    deep_json,
    huge_int_json,
    huge_key_json,
    jpeg_with_corrupt_exif,
    many_scan_jpeg,
    pixel_budget_json,
    tiff_im_polyglot,
)
from tests.serving_support import export_untrained_model, invoke, running_server, through_sagemaker_handler

pytest.importorskip("sagemaker_pytorch_serving_container")

HOSTILE = {
    "thin_png": (black_png(1, 30_000), "image/png", 400),
    "wide_png": (black_png(30_000, 1), "image/png", 400),
    "over_request_pixel_budget": (pixel_budget_json(32, 6_300), "application/json", 413),
    "deep_json": (deep_json(100_000), "application/json", 400),
    "huge_int_json": (huge_int_json(5_000), "application/json", 400),
    "huge_key_json": (huge_key_json(5 * 2**20), "application/json", 400),
    "garbage": (b"\x00garbage" * 100, "image/jpeg", 400),
    "corrupt_exif_jpeg": (jpeg_with_corrupt_exif(), "image/jpeg", 200),
    "tiff_im_polyglot": (tiff_im_polyglot(20_000), "image/tiff", 200),  # the 16 x 16 TIFF it is
    "jpeg_1000_scans": (many_scan_jpeg(13_000, 13_000, 1_000), "image/jpeg", 413),
}


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet18 (64 px) packed as model.tar.gz and extracted as SageMaker does."""
    work = tmp_path_factory.mktemp("hostile-sagemaker")
    export_untrained_model(work / "export")
    with tarfile.open(pack_model(work / "export")) as tar:
        tar.extractall(work / "opt-ml-model", filter="data")
    return work / "opt-ml-model"


def test_hostile_requests_get_the_local_server_answers_through_the_toolkit(packed_model, tmp_path):
    requests = []
    for name, (body, content_type, _) in HOSTILE.items():
        (tmp_path / name).write_bytes(body)
        requests.append({"body_file": str(tmp_path / name), "content_type": content_type, "accept": None})
    results = through_sagemaker_handler(packed_model, requests, tmp_path, {"DOGBREED_THREADS": "1"})[
        "results"
    ]

    with running_server(create_app(packed_model, ServerSettings(threads=1, max_wait_ms=0))) as port:
        local = {name: invoke(port, body, content_type) for name, (body, content_type, _) in HOSTILE.items()}
    for (name, (_, _, status)), via_toolkit in zip(HOSTILE.items(), results, strict=True):
        assert via_toolkit["status"] == local[name].status == status, (name, via_toolkit["body"][:300])
        assert via_toolkit["content_type"] == "application/json", name
        if status != 200:
            assert via_toolkit["body"] == local[name].body.decode(), name  # byte for byte the same JSON
            assert "Traceback" not in via_toolkit["body"] and str(ROOT) not in via_toolkit["body"], name
            assert len(via_toolkit["body"]) < 1024, name
