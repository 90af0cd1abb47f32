"""DogBreedDataModule: train/valid/test ImageFolder splits with the weights' own preprocessing."""

from __future__ import annotations

import copy
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from dogbreed.config.choices import BAD_IMAGE_POLICIES, DECODE_CHOICES
from dogbreed.data.device_decode import EncodedImages, collate_encoded, decode_and_transform, read_for_device
from dogbreed.data.download import DOG_IMAGES_URL, download_dataset
from dogbreed.data.embedded import generate_dataset
from dogbreed.data.folders import BreedImageFolder
from dogbreed.data.layout import choose_classes, inspect_layout
from dogbreed.data.preprocessing import Preprocessing, preprocessing_for
from dogbreed.data.sampling import EpochSeededLoader
from dogbreed.hardware import available_cpus

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    """One loader process per core, leaving one core to the main process (at most 32).

    A GPU trains on more images a second than one core decodes, so the count follows the machine rather
    than a small cap (loader rates per worker: docs/benchmarks.md).
    """
    return max(1, min(32, available_cpus() - 1))


class DogBreedDataModule(pl.LightningDataModule):
    def __init__(
        self,
        root: str | os.PathLike,
        arch: str = "resnet50",
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | str = "auto",
        pin_memory: bool | str = "auto",
        prefetch_factor: int | None = None,
        min_crop_scale: float = 0.08,
        hflip: bool = True,
        num_classes: int | None = None,
        images_per_class: int | None = None,
        eval_images_per_class: int | None = None,
        subset_seed: int = 0,
        on_bad_image: str = "error",
        scan_images: bool = True,
        download: bool = False,
        url: str = DOG_IMAGES_URL,
        sha256: str | None = None,
        synthetic: dict[str, Any] | None = None,
        shuffle_seed: int | None = None,
        decode: str = "auto",
    ) -> None:
        super().__init__()
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(
                f"data.on_bad_image={on_bad_image} is not one of {', '.join(BAD_IMAGE_POLICIES)}"
            )
        if decode not in DECODE_CHOICES:
            raise ValueError(f"data.decode={decode} is not one of {', '.join(DECODE_CHOICES)}")
        self.decode = decode
        self.root = Path(root).expanduser()
        self.preprocessing: Preprocessing = preprocessing_for(arch, image_size, min_crop_scale, hflip)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers == "auto" else int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        self.subset = dict(
            num_classes=num_classes,
            images_per_class=images_per_class,
            eval_images_per_class=eval_images_per_class,
            seed=subset_seed,
        )
        self.on_bad_image = on_bad_image
        self.scan_images = scan_images
        self.download, self.url, self.sha256 = download, url, sha256
        self.synthetic = dict(synthetic) if synthetic else None
        # Set: each epoch's training order depends on (shuffle_seed, epoch) alone, so a resumed run
        # shuffles as the uninterrupted one did (fit() passes the run's seed).
        self.shuffle_seed = shuffle_seed
        self._train_loader: EpochSeededLoader | None = None
        self._restored_train_epoch = 0
        self.datasets: dict[str, BreedImageFolder] = {}
        self.class_names: list[str] = []

    def prepare_data(self) -> None:
        """Create the data folder when asked to: the embedded synthetic set, or the dog-breed download."""
        if self.synthetic is not None:
            synthetic = dict(self.synthetic)
            home = Path(synthetic.pop("root", self.root)).expanduser()
            # Only the generator's own folder is generated into; any other data.root is the user's.
            if home.resolve() == self.root.resolve():
                generate_dataset(self.root, **synthetic)
        elif self.download:
            download_dataset(self.root.parent, self.url, sha256=self.sha256, name=self.root.name)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # fit() sets up before building the model; Lightning calls setup again
        layout = inspect_layout(self.root)
        self.class_names = choose_classes(layout.classes, self.subset["num_classes"], self.subset["seed"])
        prep = self.preprocessing
        common = dict(
            classes=self.class_names,
            seed=self.subset["seed"],
            skip_bad=self.on_bad_image == "skip",
            scan=self.scan_images,
            draft_size=prep.resize_size,
        )
        eval_per_class = self.subset["eval_images_per_class"] or self.subset["images_per_class"]
        self.datasets = {
            "train": BreedImageFolder(
                self.root / "train",
                transform=prep.train_transform(),
                images_per_class=self.subset["images_per_class"],
                **common,
            ),
            "valid": BreedImageFolder(
                self.root / "valid",
                transform=prep.eval_transform(),
                images_per_class=eval_per_class,
                **common,
            ),
            "test": BreedImageFolder(
                self.root / "test", transform=prep.eval_transform(), images_per_class=eval_per_class, **common
            ),
        }

    @property
    def skipped_images(self) -> list[tuple[str, str]]:
        return [item for ds in self.datasets.values() for item in ds.skipped]

    @property
    def decodes_on_device(self) -> bool:
        """Whether batches reach the training device undecoded: data.decode=gpu, or auto on a CUDA trainer."""
        if self.decode == "auto":
            return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return self.decode == "gpu"

    def _device_path(self, split: str) -> dict:
        """The split read as file bytes (device_decode), and the collate that keeps them as they are."""
        dataset = copy.copy(self.datasets[split])  # same samples; only how each is read changes
        dataset.loader = partial(read_for_device, draft_size=self.preprocessing.resize_size)
        dataset.transform = None
        if split == "train":
            device = self.trainer.strategy.root_device if self.trainer is not None else None
            log.info("data.decode=%s: batches are decoded and augmented on %s", self.decode, device)
            if device is None or device.type != "cuda":
                log.warning(
                    "data.decode=gpu without a GPU: the main process decodes every batch, slower than "
                    "data.decode=cpu, whose loader workers decode in parallel"
                )
        return {"dataset": dataset, "collate_fn": partial(collate_encoded, augment=split == "train")}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The GPU input path's second half: decode and transform a batch where it now is (device_decode)."""
        images, targets = batch
        if not isinstance(images, EncodedImages):
            return batch
        pixels, targets = decode_and_transform(
            images, targets, self.preprocessing, skip_bad=self.on_bad_image == "skip"
        )
        if self.trainer is not None:  # e.g. trainer.precision=bf16-true: the inputs in the weights' dtype
            pixels = self.trainer.precision_plugin.convert_input(pixels)
        return pixels, targets

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        seeded = shuffle and self.shuffle_seed is not None
        loader, extra = (EpochSeededLoader, {"seed": self.shuffle_seed}) if seeded else (DataLoader, {})
        data = self._device_path(split) if self.decodes_on_device else {"dataset": self.datasets[split]}
        return loader(
            **data,
            **extra,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            # Batches each worker prepares ahead (DataLoader's default, 2, when null); workers only.
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", shuffle=True)
        if isinstance(loader, EpochSeededLoader):
            loader.epoch = self._restored_train_epoch
            self._train_loader = loader
        return loader

    # Lightning saves a datamodule's state in its checkpoints and restores it before it asks for the
    # training loader: the loader of a resumed run starts at the epoch the checkpoint had reached.
    def state_dict(self) -> dict[str, int]:
        return {"train_epoch": self._train_loader.epoch} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._restored_train_epoch = int(state_dict.get("train_epoch", 0))

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
