"""The optimised inference artifact: made by a real training's export, checked against PyTorch with the real
runtimes, refused when it disagrees, and chosen (or not) by the engine that serves the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dogbreed.modeldir.archive import REQUIREMENTS, add_inference_code
from dogbreed.modeldir.artifact import softmax
from dogbreed.modeldir.reader import load_model, read_model_description
from dogbreed.modeldir.runtimes import open_session
from dogbreed.serving.decoding import read_request
from dogbreed.serving.engine import InferenceEngine
from dogbreed.serving.engine_choice import EngineUnavailable, choose_engine
from tests.conftest import ROOT

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytestmark = pytest.mark.slow  # most tests share a tiny training run


def copy_model(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def test_export_writes_onnx_and_int8_with_parity_figures_per_runtime(optimized_run, shapes3):
    artifacts = json.loads((optimized_run / "model.json").read_text())["artifacts"]
    assert set(artifacts) == {"fp32", "int8"}
    fp32, int8 = artifacts["fp32"], artifacts["int8"]
    assert (optimized_run / fp32["file"]).is_file() and (optimized_run / int8["file"]).is_file()
    assert set(fp32["parity"]) == set(int8["parity"]) == {"openvino", "onnxruntime"}
    assert fp32["parity_images"] == {"count": 36, "source": "validation split"}
    assert int8["calibration_images"] == {"count": 48, "source": "training split"}
    for figures in fp32["parity"].values():
        assert figures["max_prob_diff"] < 1e-4 and figures["top1_agreement"] == 1.0
        assert figures["images"] == 36
    for figures in int8["parity"].values():
        assert 0 < figures["max_prob_diff"] <= 0.5  # quantised: not bit-equal, within its limit

    # The figures describe the file: rerun the fp32 graph on validation images and compare with PyTorch.
    images = sorted((shapes3 / "valid").rglob("*.jpg"))[:8]
    model = load_model(optimized_run)
    batch = model.preprocess(images)
    expected = model.probabilities(batch).numpy()
    got = softmax(open_session("onnxruntime", optimized_run / fp32["file"], 1)(batch.numpy()))
    assert np.abs(got - expected).max() < 1e-4


def test_auto_serves_int8_with_the_fastest_runtime_and_answers_close_to_torch(optimized_run, shapes3):
    engine = InferenceEngine.load(optimized_run, device="cpu", engine="auto")
    assert engine.name == "openvino int8" and engine.net is None
    reference = InferenceEngine.load(optimized_run, device="cpu", optimize="none")
    images = sorted((shapes3 / "test").rglob("*.jpg"))[:6]
    encoded = [read_request(p.read_bytes(), "image/jpeg")[0] for p in images]
    got, expected = engine.predict_encoded(encoded), reference.predict_encoded(encoded)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got.sum(dim=1), torch.ones(len(images)), atol=1e-5)
    assert (got - expected).abs().max() <= 0.5  # the INT8 limit this model was accepted under


def test_a_version_outside_the_limits_is_refused_with_a_message_and_never_served(
    optimized_run, shapes3, tmp_path
):
    model_dir = copy_model(optimized_run, tmp_path)
    command = [
        sys.executable,
        "-m",
        "dogbreed.cli.optimize",
        str(model_dir),
        "--calibration",
        str(shapes3 / "train"),
        "--parity",
        str(shapes3 / "valid"),
        "--calibration-size",
        "24",
        "--int8-max-prob-diff",
        "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "int8 refused: outside the parity limits, not kept and never served" in done.stderr
    int8 = json.loads((model_dir / "model.json").read_text())["artifacts"]["int8"]
    assert set(int8["refused"]) == {"openvino", "onnxruntime"} and "file" not in int8
    assert "int8 on openvino: REFUSED (max |Δprob|" in done.stdout
    assert not (model_dir / "model.int8.onnx").exists()  # the earlier INT8 file went with it

    # auto serves the fp32 version that passed; naming a runtime serves it too.
    description = read_model_description(model_dir)
    assert choose_engine(model_dir, description, "auto").precision == "fp32"
    assert InferenceEngine.load(model_dir, device="cpu", engine="onnxruntime").name == "onnxruntime fp32"


def test_figures_beyond_their_limits_or_other_weights_are_refused_at_load(optimized_run, tmp_path):
    model_dir = copy_model(optimized_run, tmp_path)
    config = json.loads((model_dir / "model.json").read_text())
    for entry in config["artifacts"].values():
        entry["parity"]["openvino"]["top1_agreement"] = 0.2  # as if it had disagreed on OpenVINO only
    (model_dir / "model.json").write_text(json.dumps(config))
    refused = r"engine=openvino cannot serve .*disagrees .*on openvino: top-1 agreement 0.2"
    with pytest.raises(EngineUnavailable, match=refused):
        InferenceEngine.load(model_dir, device="cpu", engine="openvino")
    assert InferenceEngine.load(model_dir, device="cpu", engine="auto").name == "onnxruntime int8"
    for entry in config["artifacts"].values():
        entry["parity"]["onnxruntime"]["max_prob_diff"] = 0.9
    (model_dir / "model.json").write_text(json.dumps(config))
    assert InferenceEngine.load(model_dir, device="cpu", engine="auto").name == "torch fuse"

    other = copy_model(optimized_run, tmp_path / "other")
    state = torch.load(other / "weights.pt", weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, other / "weights.pt")
    with pytest.raises(EngineUnavailable, match="made from other weights"):
        InferenceEngine.load(other, device="cpu", engine="onnxruntime")


def test_a_new_export_never_carries_the_old_artifact(optimized_run, tmp_path):
    from dogbreed.modeldir.writer import export_model

    model_dir = copy_model(optimized_run, tmp_path)
    old = load_model(model_dir)
    export_model(
        old.net, model_dir, arch=old.arch, class_names=old.class_names, preprocessing=old.preprocessing
    )
    assert not (model_dir / "model.onnx").exists() and not (model_dir / "model.int8.onnx").exists()
    assert InferenceEngine.load(model_dir, device="cpu", engine="auto").runtime == "torch"


def test_packaged_requirements_list_the_runtime_only_for_models_with_an_artifact(optimized_run, tmp_path):
    model_dir = copy_model(optimized_run, tmp_path)
    requirements = (add_inference_code(model_dir) / "requirements.txt").read_text()
    assert requirements.startswith(REQUIREMENTS)
    listed = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert listed == ["Pillow", "numpy", "openvino>=2024.4"]


def test_training_makes_the_artifact_by_default_and_tuning_trials_skip_it():
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        train, tune = compose("train"), compose("tune")
    assert train.onnx.enabled is True and train.onnx.quantize == "int8"
    assert train.onnx.calibration_size == 300
    assert tune.onnx.enabled is False
