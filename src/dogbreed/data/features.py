"""Feature cache: with a frozen backbone, compute its features of every split once and train the head on them.

With `model.freeze=head` the backbone (BatchNorm included) never changes, so what it makes of an image is
the same in every epoch, every trial and every run with the same weights, preprocessing and images. The
features are computed once (with a progress bar), stored under `feature_cache.dir/<key>/`, and every later
run with the same key loads them: an epoch is then a few matrix products instead of a pass of ResNet50.

The key covers everything that changes the features: architecture, a hash of the backbone's weights (a
named checkpoint or a seeded random init alike), the evaluation preprocessing (sizes, normalisation,
interpolation), the classes and, for each split, every image's path, size and modification time.

The train split goes through the evaluation transform: no random crops or flips in the cached pass.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from dogbreed.data.layout import SPLITS

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# One computation at a time in this process: parallel trials (threads) wait for the first one's cache.
_build_lock = threading.Lock()


def backbone_digest(net: nn.Module) -> str:
    """A hash of every backbone tensor (parameters and BatchNorm buffers), the head left out."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        if name.startswith("fc."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset, root: Path) -> list:
    """(path relative to the data root, class index, size, mtime) of every image the split uses."""
    rows = []
    for path, target in dataset.samples:
        stat = os.stat(path)
        rows.append([os.path.relpath(path, root), int(target), stat.st_size, stat.st_mtime_ns])
    return rows


def cache_key(images, arch: str, weights_digest: str) -> str:
    """sha256 over everything that changes the features, as a short directory name."""
    prep = images.preprocessing
    description = {
        "format": CACHE_FORMAT,
        "torch": torch.__version__.split("+")[0],
        "arch": arch,
        "backbone": weights_digest,
        "preprocessing": {
            "crop_size": prep.crop_size,
            "resize_size": prep.resize_size,
            "mean": list(prep.mean),
            "std": list(prep.std),
            "interpolation": prep.interpolation,
        },
        "classes": list(images.class_names),
        "splits": {split: dataset_fingerprint(images.datasets[split], images.root) for split in SPLITS},
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_features(
    net: nn.Module, dataset: Dataset, batch_size: int, num_workers: int, desc: str, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's output (the head's input) for every image of `dataset`, and its labels."""
    head, net.fc = net.fc, nn.Identity()
    was_training, home = net.training, next(net.parameters()).device
    net.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    features, targets = [], []
    # A DataLoader draws its base seed from the global generator: fork it, so that a run which builds the
    # cache trains exactly like one which finds it.
    try:
        with torch.random.fork_rng(devices=[]):
            for images, labels in tqdm(loader, desc=desc, unit="batch"):
                images = images.to(device).contiguous(memory_format=torch.channels_last)
                features.append(net(images).float().cpu())
                targets.append(labels)
    finally:
        net.fc = head
        net.train(was_training).to(home)
    return torch.cat(features), torch.cat(targets)


def _build(images, net: nn.Module, arch: str, out_dir: Path, device: str) -> None:
    """Compute every split into a temporary folder, then move it into place (a killed run leaves none)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        counts = {}
        for split in SPLITS:
            dataset = copy.copy(images.datasets[split])
            dataset.transform = images.preprocessing.eval_transform()  # no augmentation in the cached pass
            feats, targets = compute_features(
                net, dataset, images.eval_batch_size, images.num_workers, f"features {split}", device
            )
            torch.save({"features": feats, "targets": targets}, tmp / f"{split}.pt")
            counts[split] = len(targets)
        meta = {"arch": arch, "root": str(images.root), "dim": int(feats.shape[1]), "images": counts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_compute(images, net: nn.Module, arch: str, cache_dir: str | Path, device: str = "cpu") -> Path:
    """The cache folder of these images and this backbone, computed first when it is not there yet."""
    key = cache_key(images, arch, backbone_digest(net))
    out_dir = Path(cache_dir).expanduser() / f"{arch}-{key}"
    with _build_lock:
        if (out_dir / "meta.json").is_file():
            log.info("feature cache hit: %s", out_dir)
        else:
            log.info("computing backbone features once into %s", out_dir)
            _build(images, net, arch, out_dir, device)
    return out_dir


class FeatureDataModule(pl.LightningDataModule):
    """Cached backbone features in place of images, with the image data module's classes and settings."""

    def __init__(self, images, cache_dir: Path) -> None:
        super().__init__()
        self.images = images
        self.cache_dir = cache_dir
        self.class_names = images.class_names
        self.preprocessing = images.preprocessing  # still what the exported model needs for images
        self.batch_size, self.eval_batch_size = images.batch_size, images.eval_batch_size
        self.datasets = {}
        for split in SPLITS:
            data = torch.load(cache_dir / f"{split}.pt", map_location="cpu", weights_only=True)
            self.datasets[split] = TensorDataset(data["features"], data["targets"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def skipped_images(self) -> list[tuple[str, str]]:
        return self.images.skipped_images

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # In-memory tensors: loader processes would only add start-up time.
        size = self.batch_size if split == "train" else self.eval_batch_size
        return DataLoader(self.datasets[split], batch_size=size, shuffle=shuffle, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def feature_datamodule(images, model, cache_dir: str | Path) -> FeatureDataModule:
    """Swap the image data module for cached features; `model` must be built to run its head only
    (BreedClassifier(head_only=True)): nothing here changes it."""
    if not getattr(model, "head_only", False):
        raise ValueError("cached features feed the head only: build the model with head_only=True")
    if model.hparams.freeze != "head":
        raise ValueError(
            f"feature_cache.enabled=true needs a frozen backbone (model.freeze=head), not "
            f"model.freeze={model.hparams.freeze}: the features would change as the backbone trains"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return FeatureDataModule(
        images, load_or_compute(images, model.net, model.hparams.arch, cache_dir, device)
    )
