"""What a job installs for its export step, and the serving runtime's wheels an archive ships (fetched by
the real pip, here from a local folder with no index)."""

from __future__ import annotations

import logging
import tarfile

import pytest

from dogbreed.config.extras import EXTRAS
from dogbreed.modeldir.archive import REQUIREMENTS, pack_model
from dogbreed.modeldir.runtime_wheels import (
    WheelsUnavailable,
    download_wheels,
    python_of_py_version,
    this_python,
)
from dogbreed.sagemaker.source_bundle import export_requirements, stage_source
from tests.container_packages import wheel_of_installed


def test_a_job_installs_what_its_export_step_needs_only_when_it_makes_the_artifact(tmp_path):
    needed = export_requirements({"enabled": True})
    assert needed == [*EXTRAS["onnx"], *EXTRAS["openvino"]]
    assert export_requirements({"enabled": False}) == [] and export_requirements(None) == []
    listed = (stage_source(tmp_path / "source", needed) / "requirements.txt").read_text().split()
    assert {"onnx>=1.16", "onnxruntime>=1.18", "openvino>=2024.4"} <= set(listed)


def test_an_images_py_version_names_pips_python_version():
    assert python_of_py_version("py312") == "3.12" and python_of_py_version("py310") == "3.10"
    with pytest.raises(ValueError, match="py_version 'python3' is not of the form py312"):
        python_of_py_version("python3")


@pytest.fixture
def no_index(tmp_path, monkeypatch):
    """pip with no index and no configuration: only the folder returned (empty at first) holds packages."""
    folder = tmp_path / "find-links"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_wheels_are_fetched_for_the_endpoints_python_and_a_failure_says_why(no_index, tmp_path):
    pytest.importorskip("openvino_telemetry")
    with pytest.raises(WheelsUnavailable, match=r"pip download openvino-telemetry for Python 3\.\d+ failed"):
        download_wheels("openvino-telemetry", tmp_path / "wheels", this_python())
    wheel = wheel_of_installed("openvino-telemetry", no_index)  # a pure wheel: any CPython, any platform
    got = download_wheels("openvino-telemetry", tmp_path / "wheels", "3.12")
    assert [p.name for p in got] == [wheel.name] and got[0].parent == tmp_path / "wheels"


@pytest.mark.slow
def test_an_archive_without_its_runtimes_wheels_serves_torch_and_never_needs_an_index(
    optimized_run, no_index, tmp_path, caplog
):
    with caplog.at_level(logging.WARNING, logger="dogbreed.modeldir.archive"):
        archive = pack_model(optimized_run, tmp_path / "model.tar.gz", this_python())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        requirements = tar.extractfile("code/requirements.txt").read().decode()  # type: ignore[union-attr]
    assert requirements == REQUIREMENTS  # the runtime left out: pip never looks for it
    assert not [n for n in names if n.startswith("code/wheels")]
    said = [r.getMessage() for r in caplog.records if "not shipped" in r.getMessage()]
    assert len(said) == 1 and "the endpoint serves torch unless its image has openvino" in said[0], said
