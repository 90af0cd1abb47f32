"""The exported model/: loads with weights_only, predicts what the trainer measured, refuses bad dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from dogbreed.config.errors import user_error_message
from dogbreed.data.preprocessing import Preprocessing
from dogbreed.model.network import build_network
from dogbreed.modeldir.format import ModelDirError, display_name, is_model_dir, model_dir_problem
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model
from dogbreed.training.evaluation import evaluate_model_dir


def test_model_dir_reproduces_the_test_accuracy_of_the_run(trained_run, shapes3):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    summary = evaluate_model_dir(trained_run / "model", shapes3 / "test", trained_run / "re-eval")
    assert summary["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    before = (trained_run / "evaluation" / "per_class_accuracy.csv").read_text()
    assert (trained_run / "re-eval" / "per_class_accuracy.csv").read_text() == before


def test_predict_accepts_paths_pil_images_and_bytes_alike(trained_run, shapes3):
    model = load_model(trained_run / "model")
    path = sorted((shapes3 / "test").rglob("*.jpg"))[0]
    by_path, by_pil, by_bytes = model.predict([path, Image.open(path), path.read_bytes()], topk=2)
    assert by_path[0].index == by_pil[0].index == by_bytes[0].index
    assert by_path[0].probability == pytest.approx(by_bytes[0].probability, abs=1e-6)
    assert len(by_path) == 2 and by_path[0].probability >= by_path[1].probability
    assert by_path[0].class_name in model.class_names
    assert by_path[0].label == display_name(by_path[0].class_name)
    assert torch.load(trained_run / "model" / "weights.pt", weights_only=True)  # plain tensors only


def test_display_names():
    assert display_name("001.Affenpinscher") == "Affenpinscher"
    assert display_name("042.Basset_hound") == "Basset hound"
    assert display_name("plain") == "plain"


def test_bad_model_dirs_are_refused_with_the_file_named(trained_run, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(trained_run / "model", broken)
    config = json.loads((broken / "model.json").read_text())
    config["class_names"] = config["class_names"] + ["999.Extra"]
    (broken / "model.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match=r"3 output classes but .*model\.json names 4 classes"):
        load_model(broken)

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    torch.save({"fc.weight": Payload()}, broken / "weights.pt")
    with pytest.raises(ModelDirError, match=r"weights\.pt is refused: it holds pickled Python objects"):
        load_model(broken)
    (broken / "weights.pt").unlink()
    with pytest.raises(ModelDirError, match=r"holds no weights\.pt"):
        load_model(broken)


def test_an_export_killed_midway_leaves_the_previous_model_whole(tmp_path, monkeypatch):
    def export(seed: int):
        torch.manual_seed(seed)
        return export_model(
            build_network("resnet18", 3),
            tmp_path / "model",
            arch="resnet18",
            class_names=["a", "b", "c"],
            preprocessing=Preprocessing(crop_size=32, resize_size=36),
        )

    first = torch.load(export(0) / "weights.pt", weights_only=True)
    real_save = torch.save

    def killed_while_writing(obj, f, *args, **kwargs):  # half the bytes reach the disk, then the process dies
        real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[: Path(f).stat().st_size // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        export(1)
    monkeypatch.undo()
    model = load_model(tmp_path / "model")  # the first export, whole
    assert all(torch.equal(first[k], v) for k, v in model.net.state_dict().items() if k in first)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_one_check_says_whether_a_folder_is_a_model_folder(tmp_path):
    assert model_dir_problem(tmp_path) == "holds no model.json" and not is_model_dir(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    assert model_dir_problem(tmp_path) == "holds no weights.pt"
    (tmp_path / "weights.pt").write_bytes(b"")
    assert is_model_dir(tmp_path)
    # Its error is a user error: one `error:` line naming the folder, no traceback.
    assert (
        user_error_message(ModelDirError(f"{tmp_path} holds no model.json"))
        == f"{tmp_path} holds no model.json"
    )
