"""One inference path: the same JPEG bytes get the same probabilities from `load_model().predict`,
`python -m dogbreed.training.evaluation`, the local server and the SageMaker handler (driven through the real
inference toolkit). The photo is large enough that decoding it in JPEG draft mode, as every path does,
changes the answer: a path that decoded it in full would fail here."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dogbreed.data.images import to_rgb
from dogbreed.data.preprocessing import preprocessing_for
from dogbreed.model.network import build_network
from dogbreed.modeldir.archive import pack_model
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model
from dogbreed.serving.app import create_app
from dogbreed.serving.settings import ServerSettings
from dogbreed.training.evaluation import main as evaluation_main
from tests.serving_support import invoke, running_server, through_sagemaker_handler

pytestmark = pytest.mark.slow  # the handler runs in a process of its own, as in the container

CLASSES = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
ACCEPT = "application/json; probabilities=true"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet18 at 64 px packed as model.tar.gz and extracted as SageMaker does."""
    work = tmp_path_factory.mktemp("one-path")
    torch.manual_seed(3)
    net = build_network("resnet18", len(CLASSES), None)
    with torch.no_grad():
        net.fc[-1].weight.mul_(4.0)  # away from flat probabilities, so decoding differences show
    export_model(
        net,
        work / "export",
        arch="resnet18",
        class_names=CLASSES,
        preprocessing=preprocessing_for("resnet18", 64),
    )
    with tarfile.open(pack_model(work / "export")) as tar:
        tar.extractall(work / "opt-ml-model", filter="data")
    return work / "opt-ml-model"


def large_jpeg() -> bytes:
    """A 1600x1200 photo-like JPEG: smooth gradients with fine texture, which draft decoding averages."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1200, 0:1600].astype(np.float32)
    base = np.stack([x / 1600 * 255, y / 1200 * 255, (x + y) % 256], axis=-1)
    texture = 60 * np.sin(x / 2.3)[..., None] * np.cos(y / 1.7)[..., None] + rng.normal(0, 25, base.shape)
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_the_same_bytes_get_the_same_probabilities_on_every_path(model_dir, tmp_path):
    jpeg = large_jpeg()
    model = load_model(model_dir)
    expected = model.probabilities(model.preprocess([jpeg]))[0]
    # The test means something: decoded in full, the same photo gets other probabilities.
    in_full = model.probabilities(model.transform(to_rgb(Image.open(io.BytesIO(jpeg)))).unsqueeze(0))[0]
    assert (in_full - expected).abs().max().item() > 1e-4

    # load_model().predict, from bytes and from a file
    split = tmp_path / "split"
    (split / CLASSES[1]).mkdir(parents=True)
    (split / CLASSES[1] / "photo.jpg").write_bytes(jpeg)
    by_bytes, by_file = model.predict([jpeg, split / CLASSES[1] / "photo.jpg"], topk=len(CLASSES))
    for answer in (by_bytes, by_file):
        assert {p.index: p.probability for p in answer} == pytest.approx(dict(enumerate(expected.tolist())))

    # python -m dogbreed.training.evaluation
    assert evaluation_main([str(model_dir), str(split), "--out", str(tmp_path / "evaluation")]) == 0
    with open(tmp_path / "evaluation" / "predictions.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["file"] == f"{CLASSES[1]}/photo.jpg" and row["true"] == CLASSES[1]
    assert row["predicted"] == CLASSES[int(expected.argmax())]
    assert float(row["probability"]) == pytest.approx(expected.max().item(), abs=1e-6)

    # The local server and the SageMaker endpoint's handler: the network as exported (no BatchNorm fusion)
    settings = ServerSettings(threads=1, max_wait_ms=0, engine="torch", optimize="none")
    with running_server(create_app(model_dir, settings)) as port:
        answer = invoke(port, jpeg, "image/jpeg", ACCEPT)
    assert answer.status == 200, answer.body
    by_server = answer.json()["predictions"][0]["probabilities"]
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    request = {"body_file": str(tmp_path / "photo.jpg"), "content_type": "image/jpeg", "accept": ACCEPT}
    env = {"DOGBREED_THREADS": "1", "DOGBREED_ENGINE": "torch", "DOGBREED_OPTIMIZE": "none"}
    (result,) = through_sagemaker_handler(model_dir, [request], tmp_path, env)["results"]
    assert result["status"] == 200, result["body"][:300]
    by_endpoint = json.loads(result["body"])["predictions"][0]["probabilities"]
    assert by_server == by_endpoint  # the same digits, byte for byte
    assert by_server == pytest.approx(expected.tolist(), abs=1e-6)  # answers are rounded to 6 decimals
