"""Data never silently multiplies, and the embedded generator never writes where the user pointed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate

from dogbreed.data.embedded import generate_dataset
from dogbreed.data.folders import BreedImageFolder
from dogbreed.data.layout import DataLayoutError, class_files, inspect_layout
from tests.conftest import compose_config

COUNTS = {"train": 4, "valid": 2, "test": 2}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return generate_dataset(tmp_path / "data", num_classes=3, images_per_class=COUNTS, image_size=32)


def _class_dir(root: Path, split: str = "train", index: int = 2) -> Path:
    return sorted((root / split).iterdir())[index]


@pytest.mark.parametrize("target", ["..", "../.."], ids=["split_folder", "data_root"])
def test_a_link_out_of_a_class_folder_is_refused_naming_it(data, target):
    link = _class_dir(data) / "loop"
    os.symlink(target, link)
    with pytest.raises(DataLayoutError, match=f"{link}.*outside its class folder"):
        inspect_layout(data)
    with pytest.raises(DataLayoutError, match="loop"):
        BreedImageFolder(data / "train", [p.name for p in sorted((data / "train").iterdir())])


def test_the_smoke_recipe_refuses_a_looping_data_folder_before_training(data, tmp_path):
    """Through the real config and data module, as train.py builds them."""
    os.symlink("..", _class_dir(data) / "loop")
    cfg = compose_config(tmp_path / "run", ["experiment=smoke", f"data.root={data}", "data.num_workers=0"])
    module = instantiate(cfg.data)
    module.prepare_data()
    with pytest.raises(DataLayoutError, match="loop"):
        module.setup("fit")


def test_links_inside_the_class_folder_are_followed_once(data, tmp_path):
    class_dir = _class_dir(data)
    elsewhere = tmp_path / "more"
    elsewhere.mkdir()
    for image in sorted(class_dir.iterdir())[:2]:
        (elsewhere / f"extra_{image.name}").write_bytes(image.read_bytes())
    os.symlink(elsewhere, class_dir / "more")  # out of the class folder: refused
    with pytest.raises(DataLayoutError):
        class_files(class_dir)
    os.unlink(class_dir / "more")
    (class_dir / "sub").mkdir()
    os.symlink(class_dir / "sub", class_dir / "again")  # the same folder twice: refused
    with pytest.raises(DataLayoutError, match="already read"):
        class_files(class_dir)
    os.unlink(class_dir / "again")
    linked_class = data / "train" / "004.linked"
    os.symlink(elsewhere, linked_class)  # a class folder that is itself a link is fine
    assert len([f for f in class_files(linked_class) if f.endswith(".jpg")]) == 2


def test_the_generator_never_writes_to_a_data_root_the_user_gave(tmp_path):
    missing = tmp_path / "nonexistent"
    cfg = compose_config(tmp_path / "run", ["experiment=smoke", f"data.root={missing}"])
    module = instantiate(cfg.data)
    module.prepare_data()
    assert not missing.exists(), "the embedded generator wrote to the user's data.root"
    with pytest.raises(DataLayoutError, match=f"data folder {missing} does not exist"):
        module.setup("fit")


def test_the_generator_never_replaces_a_folder_that_is_not_its_own(tmp_path):
    mine = tmp_path / "photos"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "keep.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not a generated data set"):
        generate_dataset(mine, num_classes=2, images_per_class=COUNTS)
    assert (mine / "train" / "keep.jpg").read_bytes() == b"precious"


def test_the_smoke_recipe_still_generates_its_own_data(tmp_path):
    cfg = compose_config(tmp_path / "run", ["experiment=smoke"])
    module = instantiate(cfg.data)
    module.prepare_data()
    assert (Path(cfg.data.root) / "synthetic.json").is_file()


@pytest.mark.parametrize(
    "bad", ["\n", "\t", "|", "\x1b", "\u202e"], ids=["newline", "tab", "pipe", "escape", "rtl"]
)
def test_a_class_folder_name_with_a_control_character_or_pipe_is_refused_naming_it(data, tmp_path, bad):
    """Class names go into CSV reports, logs and model.json: a name that would break a line or a column is
    refused at data setup, in every split it appears in, through the real config and data module."""
    old = _class_dir(data, "train", 1).name
    new = old[:4] + "Bad" + bad + "name"
    for split in COUNTS:
        (data / split / old).rename(data / split / new)
    with pytest.raises(DataLayoutError, match=rf"class folder name {re.escape(repr(new))} holds") as info:
        inspect_layout(data)
    assert all(f"{data / split}:" in str(info.value) for split in COUNTS)
    cfg = compose_config(tmp_path / "run", ["experiment=smoke", f"data.root={data}", "data.num_workers=0"])
    module = instantiate(cfg.data)
    module.prepare_data()
    with pytest.raises(DataLayoutError, match=re.escape(repr(new))):
        module.setup("fit")
