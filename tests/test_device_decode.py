"""The GPU input path (data.decode=gpu), run on CPU tensors: same augmentation as the CPU path, same image
handling, and a training run through fit(). On a machine with CUDA the last test runs it on the GPU too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torchvision.transforms import RandomResizedCrop

from dogbreed.data import BadImageError, DogBreedDataModule
from dogbreed.data.device_decode import EncodedImages, decode_batch, read_for_device
from dogbreed.data.device_transforms import sample_crop_boxes
from dogbreed.data.images import load_rgb
from dogbreed.data.preprocessing import CROP_RATIO
from dogbreed.training.fit import fit
from tests.conftest import TINY, compose_config
from tests.images import gradient, jpeg_bytes, write_awkward_images

# Source images whose pixels say where they came from: red grows with x, green with y.
SOURCE = (120, 90)
IMAGE_SIZE = 48  # its resize (55 px for resnet18) exceeds half the source: load_rgb decodes full size too


def image_folder(root: Path, train: dict[str, bytes], per_class: int = 1) -> Path:
    """train/valid/test of two classes; train/a holds `train`'s files, every other folder one gradient."""
    for split in ("train", "valid", "test"):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(gradient(SOURCE), quality=95))
    for name, data in train.items():
        (root / "train" / "a" / name).write_bytes(data)
    return root


def same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    """Two-sample Kolmogorov-Smirnov test at the 0.1 % level: the empirical CDFs' largest gap is small."""
    points = np.concatenate([a, b])
    gap = np.abs(
        np.searchsorted(np.sort(a), points, side="right") / len(a)
        - np.searchsorted(np.sort(b), points, side="right") / len(b)
    ).max()
    return gap < 1.95 * np.sqrt((len(a) + len(b)) / (len(a) * len(b)))  # 1.95: Kolmogorov's c(0.001)


def datamodule(root: Path, decode: str, **kw) -> DogBreedDataModule:
    kw = {"arch": "resnet18", "image_size": IMAGE_SIZE, "num_workers": 0, "batch_size": 16} | kw
    dm = DogBreedDataModule(root, decode=decode, **kw)
    dm.setup("fit")
    return dm


def batches(dm: DogBreedDataModule, split: str = "train", device: str = "cpu"):
    """What a step receives: each batch moved to `device` as Lightning moves it, then the module's hook."""
    loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
    for batch in loader:
        yield dm.on_after_batch_transfer(move_data_to_device(batch, torch.device(device)), 0)


def geometry(images: torch.Tensor, mean, std) -> dict[str, np.ndarray]:
    """Each output's crop read back from its pixels: area fraction, log aspect ratio, centre, flip."""
    pixels = images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    red, green = pixels[:, 0], pixels[:, 1]  # 0..1 across the source's width and height
    left, right = red[:, :, 0].mean(1), red[:, :, -1].mean(1)
    top, bottom = green[:, 0, :].mean(1), green[:, -1, :].mean(1)
    width, height = (right - left).abs() * SOURCE[0], (bottom - top) * SOURCE[1]
    return {
        "area": (width * height / (SOURCE[0] * SOURCE[1])).numpy(),
        "log_aspect": torch.log(width / height).numpy(),
        "centre_x": ((left + right) / 2).numpy(),
        "centre_y": ((top + bottom) / 2).numpy(),
        "flipped": (right < left).numpy(),
    }


def draw(dm: DogBreedDataModule, epochs: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    outputs = torch.cat([images for _ in range(epochs) for images, _ in batches(dm)])
    prep = dm.preprocessing
    return geometry(outputs, prep.mean, prep.std), outputs


def test_crop_boxes_follow_random_resized_crop_rule():
    torch.manual_seed(0)
    # A photo, a panorama (most draws miss: the centre-crop fallback) and a tall strip.
    for height, width in [(375, 500), (60, 1000), (900, 40)]:
        n = 2000
        ours = sample_crop_boxes(torch.full((n,), height), torch.full((n,), width), (0.08, 1.0))
        probe = torch.empty(3, height, width)
        theirs = torch.tensor(
            [RandomResizedCrop.get_params(probe, [0.08, 1.0], list(CROP_RATIO)) for _ in range(n)]
        )
        for boxes in (ours, theirs):
            top, left, h, w = boxes.T
            assert (
                (top >= 0).all()
                and (left >= 0).all()
                and (top + h <= height).all()
                and (left + w <= width).all()
            )
        for column in range(4):  # top, left, height, width
            assert same_distribution(ours[:, column].numpy(), theirs[:, column].numpy()), (
                height,
                width,
                column,
            )


def test_device_path_augments_as_the_cpu_path(tmp_path):
    root = image_folder(tmp_path / "data", {}, per_class=16)
    torch.manual_seed(0)  # the CPU path's workers and the device path's main process both draw from it
    cpu, cpu_pixels = draw(datamodule(root, "cpu"), epochs=12)
    device, pixels = draw(datamodule(root, "gpu"), epochs=12)
    assert len(pixels) == len(cpu_pixels) == 384 and pixels.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
    for key in ("area", "log_aspect", "centre_x", "centre_y"):
        assert same_distribution(cpu[key], device[key]), key
    for draws in (cpu, device):  # both span RandomResizedCrop's range of areas, (0.08, 1)
        assert draws["area"].min() < 0.15 and draws["area"].max() > 0.85
    assert abs(device["flipped"].mean() - 0.5) < 0.07 and abs(cpu["flipped"].mean() - 0.5) < 0.07
    # Normalised pixels: per-channel mean and spread of each output, compared within four standard errors
    # (on this gradient a crop's mean colour says where it lies, so the means vary from crop to crop).
    for statistic in (torch.mean, torch.std):
        ours, theirs = statistic(pixels, dim=(2, 3)), statistic(cpu_pixels, dim=(2, 3))
        error = (ours.var(0) / len(ours) + theirs.var(0) / len(theirs)).sqrt()
        assert ((ours.mean(0) - theirs.mean(0)).abs() < 4 * error).all(), (
            statistic,
            ours.mean(0),
            theirs.mean(0),
        )


def test_device_path_evaluates_as_the_cpu_path(tmp_path):
    root = image_folder(tmp_path / "data", {})
    (cpu, _), (device, targets) = (
        next(batches(datamodule(root, "cpu"), "test")),
        next(batches(datamodule(root, "gpu"), "test")),
    )
    assert device.shape == cpu.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and targets.tolist() == [0, 1]
    # The same preset on the same pixels: only the two JPEG decoders' rounding differs.
    assert (device - cpu).abs().mean() < 0.02


def test_awkward_files_reach_the_device_as_load_rgb_reads_them(tmp_path):
    files = write_awkward_images(tmp_path / "awkward")
    read = {name: read_for_device(str(path)) for name, path in files.items()}
    as_bytes = {name for name, (data, _) in read.items() if data.dim() == 1}
    # Only three-channel, upright JPEGs go to nvJPEG; the truncated one is left for decode_batch's fallback.
    assert as_bytes == {"plain.jpg", "truncated.jpg"}
    names = list(read)
    batch = EncodedImages([read[n][0] for n in names], [read[n][1] for n in names], augment=False)
    images, kept = decode_batch(batch, skip_bad=False)
    assert kept == list(range(len(names)))
    for name, image in zip(names, images, strict=True):
        expected = load_rgb(files[name])
        assert image.dtype == torch.uint8 and image.shape == (3, expected.height, expected.width), name


def test_an_image_that_fails_to_decode_is_named_or_skipped_as_on_the_cpu_path(tmp_path):
    data = jpeg_bytes(gradient(SOURCE))
    header_only = data[: data.find(b"\xff\xda")]  # passes the header scan; no picture follows
    root = image_folder(tmp_path / "data", {"broken.jpg": header_only})
    for decode in ("cpu", "gpu"):
        with pytest.raises(BadImageError, match=r"broken\.jpg"):
            list(batches(datamodule(root, decode)))
    with pytest.warns(UserWarning, match=r"skipping .*broken\.jpg"):
        seen = [targets for _, targets in batches(datamodule(root, "gpu", on_bad_image="skip"))]
    assert sorted(torch.cat(seen).tolist()) == [0, 1], "the broken file left its batch, its label too"


@pytest.mark.slow
@pytest.mark.parametrize("decode", ["gpu", "auto"])
def test_fit_with_decode_on_a_cpu_trainer(shapes3, tmp_path, decode):
    """decode=gpu on a CPU trainer runs the device path on the CPU; auto picks the CPU path there."""
    import lightning.pytorch as pl

    seen = {}

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault("on_device", trainer.datamodule.decodes_on_device)
            seen.setdefault("batch", batch[0])

    overrides = [*TINY, f"data.root={shapes3}", f"data.decode={decode}", "trainer.max_epochs=1"]
    # A few batches of each stage: this shows the path runs through fit (training, validation, test and
    # export); that it augments as the CPU path does is test_device_path_augments_as_the_cpu_path's part.
    overrides += [f"trainer.limit_{stage}_batches=2" for stage in ("train", "val", "test")]
    if decode == "auto":
        overrides.append("export=false")
    metrics = fit(compose_config(tmp_path, overrides), extra_callbacks=[Probe()])
    assert seen["on_device"] == (decode == "gpu")
    assert seen["batch"].dtype == torch.float32 and seen["batch"].shape[1:] == (3, 32, 32)
    assert all(np.isfinite(metrics[key]) for key in ("train/loss", "val/loss", "test/loss", "test/acc"))
    if decode == "gpu":
        assert (tmp_path / "model" / "model.json").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_path_on_cuda_decodes_there_as_the_cpu_path(tmp_path):
    awkward = write_awkward_images(tmp_path / "awkward")
    root = image_folder(tmp_path / "data", {name: path.read_bytes() for name, path in awkward.items()})
    (expected, _), (device, _) = (
        next(batches(datamodule(root, "cpu"), "test")),
        next(batches(datamodule(root, "gpu"), "test", "cuda")),
    )
    assert device.is_cuda and (device.cpu() - expected).abs().mean() < 0.02
    train = [images for images, _ in batches(datamodule(root, "gpu"), "train", "cuda")]
    assert all(images.is_cuda for images in train) and sum(map(len, train)) == 2 + len(awkward)
