"""Reading a model folder (dogbreed.modeldir.format): the one reader of model.json and weights.pt that
every caller uses: serving, evaluation, the model card, the archive and the optimised artifact."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dogbreed.data.layout import class_name_problem
from dogbreed.data.preprocessing import Preprocessing, PreprocessingError
from dogbreed.model.checkpoints import CheckpointError, read_checkpoint
from dogbreed.model.network import build_network
from dogbreed.modeldir.format import (
    ARTIFACTS_KEY,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelDescription,
    ModelDirError,
    model_dir_problem,
)
from dogbreed.modeldir.predictor import BreedModel


def read_model_description(model_dir: str | Path) -> ModelDescription:
    """model.json of an exported model directory, checked (weights.pt must be there too)."""
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    why = model_dir_problem(model_dir)
    if why:
        raise ModelDirError(f"{model_dir} {why}: it is not an exported dogbreed model directory")
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
    arch, class_names = description.arch, description.class_names
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
    config = description.config
    net = build_network(arch, len(class_names), None, config.get("head_hidden"), config.get("dropout", 0.0))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelDirError(
            f"{weights_path} does not fit the {arch} described in {config_path}: {exc}"
        ) from exc
    net = net.to(memory_format=torch.channels_last)
    return BreedModel(net, class_names, description.preprocessing, arch).to(device)
