"""Feature cache: computed once, reused exactly, keyed by what changes features; the export stays whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dogbreed.data.features import backbone_digest, cache_key
from dogbreed.modeldir.reader import load_model
from dogbreed.training.fit import fit
from tests.conftest import TINY, compose_config

CACHED = [
    "model.freeze=head",
    "feature_cache.enabled=true",
    "trainer.max_epochs=2",
    "data.images_per_class=8",
]


def _images(root: Path, tmp_path: Path, overrides: list[str] = ()):
    cfg = compose_config(tmp_path, [*TINY, f"data.root={root}", *overrides])
    images = instantiate(cfg.data)
    images.setup("fit")
    return images


@pytest.mark.slow
def test_cached_features_train_the_head_and_export_the_whole_network(shapes3, tmp_path):
    cache = tmp_path / "features"
    overrides = [*TINY, f"data.root={shapes3}", *CACHED, f"feature_cache.dir={cache}"]
    first = fit(compose_config(tmp_path / "first", overrides))
    (entry,) = cache.iterdir()
    stored = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    assert set(stored) == {"train.pt", "valid.pt", "test.pt", "meta.json"}
    assert json.loads((entry / "meta.json").read_text())["images"] == {"train": 24, "valid": 24, "test": 24}

    second = fit(compose_config(tmp_path / "second", overrides))
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == stored  # reused, not recomputed
    for name in ("val/loss", "test/loss", "test/acc"):  # building the cache does not change the training
        assert second[name] == pytest.approx(first[name], abs=1e-6), name

    # The exported model is the full network: from image files it predicts what the head did on features.
    model = load_model(tmp_path / "first" / "model")
    test = torch.load(entry / "test.pt", weights_only=True)
    head_probs = torch.softmax(model.net.fc(test["features"]), dim=1)
    files = [
        path for path, _ in _images(shapes3, tmp_path, ["data.images_per_class=8"]).datasets["test"].samples
    ]
    image_probs = model.probabilities(model.preprocess(files))
    assert torch.allclose(image_probs, head_probs, atol=1e-4)
    accuracy = (image_probs.argmax(1) == test["targets"]).float().mean().item()
    assert accuracy == pytest.approx(first["test/acc"], abs=1e-6)


def test_feature_cache_needs_a_frozen_backbone(shapes3, tmp_path):
    overrides = [*TINY, f"data.root={shapes3}", *CACHED, "model.freeze=layer4"]
    with pytest.raises(ValueError, match=r"feature_cache.enabled=true needs .*model.freeze=head.*layer4"):
        fit(compose_config(tmp_path, overrides))


def test_cache_key_changes_with_images_preprocessing_and_weights(shapes3, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shapes3, root)
    images = _images(root, tmp_path)
    net = instantiate(compose_config(tmp_path, TINY).model, num_classes=3).net
    digest = backbone_digest(net)
    key = cache_key(images, "resnet18", digest)
    assert cache_key(_images(root, tmp_path), "resnet18", digest) == key  # stable

    assert cache_key(_images(root, tmp_path, ["data.image_size=48"]), "resnet18", digest) != key
    assert cache_key(_images(root, tmp_path, ["data.images_per_class=4"]), "resnet18", digest) != key
    conv = net.layer1[0].conv1.weight
    original = conv.detach().clone()
    with torch.no_grad():
        conv.add_(1e-3)
        assert backbone_digest(net) != digest
        conv.copy_(original)
        net.fc[-1].weight.zero_()  # the head is not part of the key
    assert backbone_digest(net) == digest

    some_image = next((root / "valid").rglob("*.jpg"))
    stat = some_image.stat()
    os.utime(some_image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an image edited in place
    assert cache_key(_images(root, tmp_path), "resnet18", digest) != key


@pytest.mark.slow
def test_every_trial_of_a_study_trains_on_the_one_cache(shapes3, tmp_path):
    from dogbreed.tuning.study import run_study

    cache = tmp_path / "features"
    overrides = [*TINY, f"data.root={shapes3}", *CACHED, f"feature_cache.dir={cache}"]
    tune = ["search=smoke", "tune.n_trials=3", "tune.keep_models=null"]  # every trial's model kept
    cfg = compose_config(tmp_path, [*overrides, *tune], config_name="tune")
    study = run_study(cfg)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    (entry,) = cache.iterdir()
    # Written while the first trial ran, never again: the later trials read it.
    written = max(p.stat().st_mtime for p in entry.iterdir())
    assert written < study.trials[1].datetime_start.timestamp()
    for trial in study.trials:
        assert (Path(trial.user_attrs["run_dir"]) / "model" / "weights.pt").is_file()
