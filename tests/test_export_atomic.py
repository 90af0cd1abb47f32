"""The exported model folder is swapped in whole, readable by other users, and kills leave no litter."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from dogbreed.data.preprocessing import Preprocessing
from dogbreed.model.network import build_network
from dogbreed.modeldir.archive import add_inference_code
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model


def export(out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return export_model(
        build_network("resnet18", 3),
        out,
        arch="resnet18",
        class_names=["a", "b", "c"],
        preprocessing=Preprocessing(crop_size=32, resize_size=36),
    )


@pytest.fixture
def private_umask():
    """A user whose umask keeps everything private, as on many shared machines."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


def test_the_model_folder_is_readable_by_other_users_whatever_the_umask(tmp_path, private_umask):
    model_dir = export(tmp_path / "model")
    add_inference_code(model_dir)
    for path in [model_dir, *model_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), f"{path} is {oct(mode)}"


def test_litter_of_killed_exports_is_removed_by_the_next_one(tmp_path):
    for name in (".model.tmp-3k2j1h", ".model.old-4242", ".model.k2j3h4g5"):  # the last: older versions'
        (tmp_path / name / "code").mkdir(parents=True)
    (tmp_path / ".model.keep-me").mkdir()  # not a name an export makes: left alone
    export(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.keep-me", "model"]


def test_a_second_export_replaces_the_model_whole_and_keeps_its_code(tmp_path):
    model_dir = export(tmp_path / "model", seed=0)
    add_inference_code(model_dir)
    second = torch.load(export(tmp_path / "model", seed=1) / "weights.pt", weights_only=True)
    model = load_model(model_dir)
    assert all(torch.equal(second[k], v) for k, v in model.net.state_dict().items() if k in second)
    assert (model_dir / "code" / "inference.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_code_killed_while_being_written_keeps_the_previous_code_whole(tmp_path, monkeypatch):
    model_dir = export(tmp_path / "model")
    add_inference_code(model_dir)
    files_before = sorted(p.relative_to(model_dir) for p in (model_dir / "code").rglob("*"))
    real_write_text = Path.write_text

    def killed_while_writing(path, text, *args, **kwargs):  # the package is copied, then the process dies
        if path.name == "requirements.txt":
            raise KeyboardInterrupt
        return real_write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        add_inference_code(model_dir)
    monkeypatch.undo()
    assert sorted(p.relative_to(model_dir) for p in (model_dir / "code").rglob("*")) == files_before
    add_inference_code(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["code", "model.json", "weights.pt"]
