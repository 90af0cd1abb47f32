"""Data: awkward files load as RGB, bad files and bad layouts fail early and clearly, subsets are stable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dogbreed.data import BadImageError, DataLayoutError, DogBreedDataModule
from dogbreed.data.embedded import generate_dataset
from dogbreed.data.images import load_rgb
from dogbreed.data.layout import inspect_layout
from tests.hostile_images import decompression_bomb_png
from tests.images import gradient, jpeg_bytes, write_awkward_images


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A fresh, writable 4-class data set each test may damage."""
    return generate_dataset(
        tmp_path / "data", num_classes=4, images_per_class={"train": 6, "valid": 3, "test": 3}, image_size=32
    )


def test_awkward_image_files_all_load_as_rgb(tmp_path):
    files = write_awkward_images(tmp_path)
    images = {name: load_rgb(path) for name, path in files.items()}
    assert all(img.mode == "RGB" for img in images.values())
    assert images["png_named.jpg"].size == (48, 32)
    assert images["exif_rotated.jpg"].size == (32, 48), "EXIF orientation must be applied"
    assert images["truncated.jpg"].size == (200, 150)
    assert np.asarray(images["transparent.png"]).min() == 255, "transparent pixels show as white"
    sixteen = np.asarray(images["sixteen_bit.png"])
    assert 0 < sixteen.mean() < 255 and sixteen.max() > sixteen.min(), (
        "16-bit range must be scaled, not clipped"
    )
    gray = np.asarray(images["grayscale.jpg"]).astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1


@pytest.mark.parametrize("content", [b"", b"this is not a picture\n"], ids=["zero-byte", "text"])
def test_unreadable_image_is_named_before_training(dataset, content):
    bad = dataset / "train" / "002.Synthetic_square_2" / "broken.jpg"
    bad.write_bytes(content)
    datamodule = DogBreedDataModule(dataset, arch="resnet18", image_size=32, num_workers=0)
    with pytest.raises(BadImageError, match=r"broken\.jpg") as info:
        datamodule.setup("fit")
    assert "data.on_bad_image=skip" in str(info.value)


def test_skip_policy_leaves_bad_files_out_and_counts_them(dataset):
    (dataset / "train" / "001.Synthetic_circle_1" / "empty.jpg").write_bytes(b"")
    (dataset / "valid" / "003.Synthetic_triangle_3" / "text.jpg").write_text("hello")
    (dataset / "train" / "001.Synthetic_circle_1" / "notes.txt").write_text("a stray non-image file")
    write_awkward_images(dataset / "test" / "004.Synthetic_cross_4")
    datamodule = DogBreedDataModule(
        dataset, arch="resnet18", image_size=32, num_workers=0, on_bad_image="skip"
    )
    datamodule.setup("fit")
    assert sorted(Path(p).name for p, _ in datamodule.skipped_images) == ["empty.jpg", "text.jpg"]
    assert len(datamodule.datasets["train"]) == 4 * 6
    assert len(datamodule.datasets["test"]) == 4 * 3 + 9  # every awkward file is kept and loads
    for images, _ in datamodule.test_dataloader():
        assert images.shape[1:] == (3, 32, 32) and torch.isfinite(images).all()


def test_huge_photos_train_and_decompression_bombs_are_named_before_training(dataset):
    folder = dataset / "train" / "001.Synthetic_circle_1"
    (folder / "huge_photo.jpg").write_bytes(jpeg_bytes(gradient((6000, 4000))))  # 24 MP: loads, resized
    (folder / "bomb.png").write_bytes(decompression_bomb_png())  # 900 MP announced in 110 KB
    with pytest.raises(BadImageError, match=r"(?s)1 unreadable .*bomb\.png: .*900000000 pixels"):
        DogBreedDataModule(dataset, arch="resnet18", image_size=32, num_workers=0).setup("fit")

    datamodule = DogBreedDataModule(
        dataset, arch="resnet18", image_size=32, num_workers=0, on_bad_image="skip"
    )
    datamodule.setup("fit")
    assert [Path(p).name for p, _ in datamodule.skipped_images] == ["bomb.png"]
    train = datamodule.datasets["train"]
    assert any(Path(p).name == "huge_photo.jpg" for p, _ in train.samples)
    batches = list(datamodule.train_dataloader())  # a whole epoch of loading, the huge photo included
    assert sum(len(images) for images, _ in batches) == 4 * 6 + 1
    assert all(images.shape[1:] == (3, 32, 32) for images, _ in batches)


def test_every_layout_problem_is_reported_at_once(dataset):
    shutil.rmtree(dataset / "test")
    for f in (dataset / "train" / "002.Synthetic_square_2").iterdir():
        f.unlink()
    shutil.rmtree(dataset / "valid" / "003.Synthetic_triangle_3")
    with pytest.raises(DataLayoutError) as info:
        inspect_layout(dataset)
    message = str(info.value)
    assert "missing split folder" in message and "test" in message
    assert "empty class folder" in message and "002.Synthetic_square_2" in message
    assert "not in valid/: 003.Synthetic_triangle_3" in message


def test_class_only_in_a_later_split_is_reported(dataset):
    (dataset / "test" / "099.Extra").mkdir()
    shutil.copy(next((dataset / "test" / "001.Synthetic_circle_1").iterdir()), dataset / "test" / "099.Extra")
    with pytest.raises(DataLayoutError, match=r"classes in test/ but not in train/: 099\.Extra"):
        inspect_layout(dataset)


def test_subset_is_deterministic_and_indexes_classes_consistently(dataset):
    def make(seed: int) -> DogBreedDataModule:
        dm = DogBreedDataModule(
            dataset,
            arch="resnet18",
            image_size=32,
            num_workers=0,
            num_classes=2,
            images_per_class=4,
            eval_images_per_class=2,
            subset_seed=seed,
        )
        dm.setup("fit")
        return dm

    first, again = make(1), make(1)
    assert first.class_names == again.class_names and len(first.class_names) == 2
    assert first.datasets["train"].samples == again.datasets["train"].samples
    assert len(first.datasets["train"]) == 8 and len(first.datasets["valid"]) == 4
    for split in ("train", "valid", "test"):
        for path, target in first.datasets[split].samples:
            assert Path(path).parent.name == first.class_names[target]
    others = {tuple(make(seed).class_names) for seed in range(2, 8)}
    assert len(others) > 1, "the seed should change which classes are chosen"


def test_eval_transform_is_the_weights_preset_and_train_augments(dataset):
    dm = DogBreedDataModule(dataset, arch="resnet50", image_size=64, num_workers=0)
    dm.setup("fit")
    assert dm.preprocessing.resize_size == round(64 * 232 / 224)
    assert dm.preprocessing.mean == (0.485, 0.456, 0.406)
    image, _ = dm.datasets["valid"][0]
    assert image.shape == (3, 64, 64)
    first, second = dm.datasets["valid"][0][0], dm.datasets["valid"][0][0]
    assert torch.equal(first, second), "evaluation preprocessing is deterministic"
    crops = {tuple(dm.datasets["train"][0][0].flatten()[:50].tolist()) for _ in range(5)}
    assert len(crops) > 1, "training augmentation is random"


def test_embedded_dataset_is_cached_and_regenerated_when_settings_change(tmp_path):
    root = generate_dataset(
        tmp_path / "emb", num_classes=2, images_per_class={"train": 2, "valid": 1, "test": 1}
    )
    marker = root / "synthetic.json"
    stamp = marker.stat().st_mtime_ns
    generate_dataset(root, num_classes=2, images_per_class={"train": 2, "valid": 1, "test": 1})
    assert marker.stat().st_mtime_ns == stamp, "same settings: reused, not rewritten"
    generate_dataset(root, num_classes=3, images_per_class={"train": 2, "valid": 1, "test": 1})
    assert len(inspect_layout(root).classes) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["emb"], "no temporary folder left behind"
