"""model.json is read as untrusted input: every preprocessing field, every class name and every artifact
file is checked on read, and a model folder that fails is refused with the file and field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dogbreed.modeldir.format import ModelDirError
from dogbreed.modeldir.reader import load_model, read_model_description
from dogbreed.serving.engine import InferenceEngine
from tests.serving_support import export_untrained_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_untrained_model(tmp_path_factory.mktemp("model-dir-checks") / "model")


@pytest.fixture
def model_dir(exported: Path, tmp_path: Path) -> Path:
    """A copy of the exported model for one test to damage."""
    return Path(shutil.copytree(exported, tmp_path / "model"))


def edit_model_json(model_dir: Path, edit) -> None:
    path = model_dir / "model.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("resize_size", 100_000, "from 1 to 4096"),
        ("crop_size", -5, "from 1 to 4096"),
        ("crop_size", 64.5, "whole number"),
        ("resize_size", 32, "below crop_size=64"),
        ("std", [0.2, 0.0, 0.2], "positive"),
        ("mean", [0.5, 0.5], "3 finite numbers"),
        ("interpolation", "sinc", "must be one of"),
        ("min_crop_scale", 2, "at most 1"),
        ("hflip", "yes", "true or false"),
        ("shear", 3, "not a preprocessing setting"),
    ],
)
def test_preprocessing_outside_what_the_transforms_can_use_is_refused(model_dir, field, value, words):
    edit_model_json(model_dir, lambda c: c["preprocessing"].__setitem__(field, value))
    pattern = rf"model\.json: preprocessing\.{field}=.*{words}"
    with pytest.raises(ModelDirError, match=pattern):
        load_model(model_dir)
    with pytest.raises(ModelDirError, match=pattern):  # what both servers load through
        InferenceEngine.load(model_dir, device="cpu", engine="auto")


def test_class_names_that_would_break_a_report_line_are_refused(model_dir):
    edit_model_json(
        model_dir, lambda c: c.__setitem__("class_names", ["001.a", "002.b\nINFO forged", "003.c"])
    )
    with pytest.raises(ModelDirError, match=r"model\.json: class_names\[1\]: .*holds '\\n'"):
        read_model_description(model_dir)


@pytest.mark.parametrize("kind", ["absolute", "parent", "link"])
def test_an_artifact_file_outside_the_model_folder_is_refused(model_dir, tmp_path, kind):
    """The artifact's sha256 and parity figures are declared by model.json itself: a record naming a file
    elsewhere would let any file on the machine be served as the model."""
    elsewhere = tmp_path / "elsewhere.onnx"
    elsewhere.write_bytes(b"not a model of this folder")
    name = {"absolute": str(elsewhere), "parent": "../elsewhere.onnx", "link": "model.onnx"}[kind]
    if kind == "link":
        (model_dir / "model.onnx").symlink_to(elsewhere)
    entry = {"file": name, "sha256": "0" * 64, "weights_sha256": "0" * 64, "parity": {}, "limits": {}}
    edit_model_json(model_dir, lambda c: c.__setitem__("artifacts", {"fp32": entry}))
    words = "outside" if kind == "link" else "must be the name of a file in"
    with pytest.raises(ModelDirError, match=rf"model\.json: artifacts\.fp32\.file=.*{words}"):
        InferenceEngine.load(model_dir, device="cpu", engine="auto")


def test_a_refused_artifact_recorded_without_a_file_still_loads(model_dir):
    entry = {"weights_sha256": "0" * 64, "parity": {}, "limits": {}, "refused": {"onnxruntime": "too far"}}
    edit_model_json(model_dir, lambda c: c.__setitem__("artifacts", {"int8": entry}))
    assert read_model_description(model_dir).class_names == ["001.a", "002.b", "003.c"]
