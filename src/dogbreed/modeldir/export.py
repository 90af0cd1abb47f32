"""The exported model directory (the content of SageMaker's model.tar.gz) and prediction from it.

model/
  weights.pt        state dict of the network, loadable with torch.load(weights_only=True)
  model.json        architecture, head, class names and preprocessing settings (and the run's manifest)
  README.md         the model card (dogbreed.tracking.model_card), written after evaluation
  model.onnx, model.int8.onnx   the optimised inference artifact (dogbreed.modeldir.artifact), when made

    python -m dogbreed.cli.optimize <model_dir> --calibration <image folder>   (see main())
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from dogbreed.config.errors import UserError
from dogbreed.data.images import load_rgb, to_rgb
from dogbreed.data.layout import class_name_problem
from dogbreed.data.preprocessing import Preprocessing, PreprocessingError
from dogbreed.files import remove_staging_litter, replace_dir, staging_dir
from dogbreed.model.checkpoints import CheckpointError, read_checkpoint
from dogbreed.model.network import build_network

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "model.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ARTIFACTS_KEY = "artifacts"  # model.json's record of the optimised artifacts (dogbreed.modeldir.artifact)
# Made from one set of weights: never carried into a new export (the new weights get their own).
ARTIFACT_FILES = (ONNX_FILE, INT8_FILE)


class ModelDirError(UserError, ValueError):
    """A model directory that cannot be loaded; the message names the file and what is wrong."""


def display_name(class_folder: str) -> str:
    """'001.Affenpinscher' -> 'Affenpinscher'; 'Basset_hound' -> 'Basset hound'."""
    head, dot, tail = class_folder.partition(".")
    name = tail if dot and head.isdigit() else class_folder
    return name.replace("_", " ")


def export_model(
    net: nn.Module,
    out_dir: str | Path,
    *,
    arch: str,
    class_names: list[str],
    preprocessing: Preprocessing,
    head_hidden: int | None = None,
    dropout: float = 0.0,
    manifest: Mapping | None = None,
) -> Path:
    """Write the model directory as one atomic swap: a reader, or a run killed midway, sees the previous
    model/ or the new one whole, never a mix; what a killed export left beside it is removed first.
    Extra files of the previous model/ (code/, added for SageMaker) are carried into the new one.

    `manifest` (the run's provenance, dogbreed.tracking.manifest) is embedded in model.json as it is.
    """
    out_dir = Path(out_dir)
    remove_staging_litter(out_dir)
    staged = staging_dir(out_dir)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, staged / WEIGHTS_FILE)
        config = {
            "format_version": FORMAT_VERSION,
            "arch": arch,
            "num_classes": len(class_names),
            "head_hidden": head_hidden,
            "dropout": dropout,
            "class_names": list(class_names),
            "preprocessing": preprocessing.to_dict(),
        }
        if manifest is not None:
            config["manifest"] = dict(manifest)
        (staged / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        if out_dir.is_dir():
            for extra in out_dir.iterdir():
                if extra.name in (WEIGHTS_FILE, CONFIG_FILE, *ARTIFACT_FILES):
                    continue
                if extra.is_dir():
                    shutil.copytree(extra, staged / extra.name, symlinks=True)
                else:
                    shutil.copy2(extra, staged / extra.name, follow_symlinks=False)
        replace_dir(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # only still there when the export failed
    return out_dir


@dataclass
class Prediction:
    index: int
    class_name: str
    label: str
    probability: float


class BreedModel:
    """An exported model loaded for inference: preprocessing, network and class names together."""

    def __init__(self, net: nn.Module, class_names: list[str], preprocessing: Preprocessing, arch: str):
        self.net = net.eval()
        self.class_names = class_names
        self.preprocessing = preprocessing
        self.arch = arch
        self.transform = preprocessing.eval_transform()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> BreedModel:
        self.net.to(device)
        return self

    @property
    def draft_size(self) -> int:
        """The size JPEGs are decoded for (PIL's draft mode skips resolution the resize throws away).
        Every inference path decodes this way (predict, evaluation, the servers), as training evaluates."""
        return self.preprocessing.resize_size

    def decode(self, image: Image.Image | str | Path | bytes) -> Image.Image:
        """An upright RGB image from a file path, encoded bytes or a PIL image."""
        if isinstance(image, Image.Image):
            return to_rgb(image)
        source = io.BytesIO(image) if isinstance(image, bytes) else image
        return load_rgb(source, draft_size=self.draft_size)

    def preprocess(self, images: Iterable[Image.Image | str | Path | bytes]) -> torch.Tensor:
        return torch.stack([self.transform(self.decode(image)) for image in images])

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes for a preprocessed batch [N, 3, H, W], on the network's device and in
        its dtype (bf16 when a server made it so); float32 [N, C] on the CPU."""
        weights = next(self.net.parameters())
        batch = batch.to(weights.device, weights.dtype, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.net(batch).float(), dim=1).cpu()

    def predict(
        self, images: Iterable[Image.Image | str | Path | bytes], topk: int = 5
    ) -> list[list[Prediction]]:
        """Top-k breeds for each image (PIL images, file paths or encoded bytes)."""
        probs = self.probabilities(self.preprocess(images))
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        return [
            [
                Prediction(int(i), self.class_names[i], display_name(self.class_names[i]), float(p))
                for p, i in zip(row_values.tolist(), row_indices.tolist(), strict=True)
            ]
            for row_values, row_indices in zip(values, indices, strict=True)
        ]


@dataclass
class ModelDescription:
    """model.json read and checked: what serving needs besides the network itself."""

    arch: str
    class_names: list[str]
    preprocessing: Preprocessing
    config: dict


def read_model_description(model_dir: str | Path) -> ModelDescription:
    """model.json of an exported model directory (weights.pt must be there too)."""
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelDirError(f"{path} is missing: {model_dir} is not an exported dogbreed model directory")
    try:
        config = json.loads(config_path.read_text())
        arch, class_names = config["arch"], list(config["class_names"])
        preprocessing = Preprocessing.from_dict(config["preprocessing"])
    except PreprocessingError as exc:
        raise ModelDirError(f"{config_path}: {exc}") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{config_path} is not a valid model description: {exc!r}") from exc
    for i, name in enumerate(class_names):
        why = class_name_problem(name) if isinstance(name, str) else f"{name!r} is not a string"
        if why:
            raise ModelDirError(f"{config_path}: class_names[{i}]: {why}")
    check_artifact_files(model_dir, config.get(ARTIFACTS_KEY), config_path)
    return ModelDescription(arch, class_names, preprocessing, config)


def check_artifact_files(model_dir: Path, record: object, config_path: Path) -> None:
    """Each optimised artifact model.json records must be a file of the model folder itself: its sha256
    and parity figures are declared by the same model.json, so a record pointing elsewhere (an absolute
    path, ../, a link out of the folder) would let that file vouch for any file on the machine."""
    if record is None:
        return
    if not isinstance(record, dict):
        raise ModelDirError(f"{config_path}: {ARTIFACTS_KEY} must be a mapping of versions")
    for precision, entry in record.items():
        name = entry.get("file") if isinstance(entry, dict) else None
        if name is None:
            continue  # a version refused at export is recorded without a file
        field = f"{ARTIFACTS_KEY}.{precision}.file"
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ModelDirError(
                f"{config_path}: {field}={name!r} must be the name of a file in {model_dir}, not a path"
            )
        resolved = (model_dir / name).resolve()
        if not resolved.is_relative_to(model_dir.resolve()):
            raise ModelDirError(f"{config_path}: {field}={name!r} links to {resolved}, outside {model_dir}")


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> BreedModel:
    """Rebuild the network from model.json and load weights.pt, refusing pickled code."""
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    description = read_model_description(model_dir)
    arch, class_names, preprocessing = description.arch, description.class_names, description.preprocessing
    config = description.config
    try:
        state = read_checkpoint(weights_path)
    except CheckpointError as exc:
        raise ModelDirError(str(exc)) from exc
    head_weight = [v for k, v in state.items() if k.startswith("fc.") and k.endswith("weight")]
    if not head_weight or head_weight[-1].shape[0] != len(class_names):
        found = head_weight[-1].shape[0] if head_weight else "no"
        raise ModelDirError(
            f"{weights_path} has {found} output classes but {config_path} names {len(class_names)} classes"
        )
    net = build_network(arch, len(class_names), None, config.get("head_hidden"), config.get("dropout", 0.0))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelDirError(
            f"{weights_path} does not fit the {arch} described in {config_path}: {exc}"
        ) from exc
    net = net.to(memory_format=torch.channels_last)
    return BreedModel(net, class_names, preprocessing, arch).to(device)
