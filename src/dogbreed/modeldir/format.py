"""What a model folder is: its file names, its format version, and model.json read back as a description.

model/
  weights.pt        state dict of the network, loadable with torch.load(weights_only=True)
  model.json        architecture, head, class names and preprocessing settings (and the run's manifest)
  README.md         the model card (dogbreed.tracking.model_card), written after evaluation
  model.onnx, model.int8.onnx   the optimised inference artifact (dogbreed.modeldir.artifact), when made
  code/             SageMaker's inference code (dogbreed.modeldir.archive), when added

Written by dogbreed.modeldir.writer, read by dogbreed.modeldir.reader; `model_dir_problem` is the one
check of whether a folder is a model folder at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dogbreed.config.errors import UserError
from dogbreed.data.preprocessing import Preprocessing

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "model.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ARTIFACTS_KEY = "artifacts"  # model.json's record of the optimised artifacts (dogbreed.modeldir.artifact)
# Made from one set of weights: never carried into a new export (the new weights get their own).
ARTIFACT_FILES = (ONNX_FILE, INT8_FILE)
# Every model folder holds these two; the rest is optional.
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)


class ModelDirError(UserError, ValueError):
    """A model directory that cannot be loaded; the message names the file and what is wrong."""


def model_dir_problem(path: str | Path) -> str | None:
    """Why `path` is not a model folder ('holds no model.json'), or None when it is one. Callers put the
    answer in their own error, with the fix their command line offers."""
    for name in REQUIRED_FILES:
        if not (Path(path) / name).is_file():
            return f"holds no {name}"
    return None


def is_model_dir(path: str | Path) -> bool:
    """Whether `path` holds an exported model (model.json and weights.pt)."""
    return model_dir_problem(path) is None


def display_name(class_folder: str) -> str:
    """'001.Affenpinscher' -> 'Affenpinscher'; 'Basset_hound' -> 'Basset hound'."""
    head, dot, tail = class_folder.partition(".")
    name = tail if dot and head.isdigit() else class_folder
    return name.replace("_", " ")


@dataclass
class ModelDescription:
    """model.json read and checked: what serving needs besides the network itself."""

    arch: str
    class_names: list[str]
    preprocessing: Preprocessing
    config: dict
