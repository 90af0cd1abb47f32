"""Settings that must also be written where the code cannot read them (pyproject.toml, conf/) agree with
their one home in the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from dogbreed.config.errors import user_error_message
from dogbreed.config.extras import EXTRAS, MODULE_EXTRAS, requirement_of
from dogbreed.modeldir.artifact import ArtifactSettings
from dogbreed.modeldir.runtimes import RUNTIME_MODULES, runtime_extra
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_extras_table_is_pyproject_optional_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {name: tuple(pins) for name, pins in extras.items() if name != "dev"} == EXTRAS
    assert set(MODULE_EXTRAS.values()) <= set(EXTRAS)


def test_runtimes_name_the_extra_and_pin_that_install_them():
    assert runtime_extra("onnxruntime") == "onnx" and runtime_extra("openvino") == "openvino"
    assert requirement_of(RUNTIME_MODULES["openvino"]) in EXTRAS["openvino"]
    assert requirement_of(RUNTIME_MODULES["onnxruntime"]).startswith("onnxruntime>=")
    missing = ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
    assert (
        user_error_message(missing)
        == "onnxruntime is not installed: pip install -e '.[onnx]' (the onnx extra)"
    )


def test_conf_train_onnx_node_holds_the_artifact_defaults(tmp_path):
    node = compose_config(tmp_path).onnx
    defaults = ArtifactSettings()
    from_conf = ArtifactSettings.from_config(node)
    assert from_conf.quantize == defaults.quantize
    assert from_conf.calibration_size == defaults.calibration_size
    assert from_conf.parity_size == defaults.parity_size
    assert set(node.parity) == set(defaults.limits) and from_conf.limits == defaults.limits
    # A node that leaves keys out falls back to the same defaults.
    assert ArtifactSettings.from_config({}) == defaults
