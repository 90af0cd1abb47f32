"""The pyfunc flavour of an exported model: what `mlflow.pyfunc.load_model` runs.

It loads the model folder (the MLflow model's artifact `model_dir`) with the project's one reader and answers
each image with its top-k breeds in the servers' shape: {"topk": [{index, class_name, label, probability}]}.
The MLflow model carries this file as its code (MLflow's models from code: nothing is pickled) and the package
modules it imports (its code/dogbreed), so loading it needs MLflow and the model's pip requirements, not the
project. Logged by dogbreed.tracking.mlflow_model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model

MODEL_DIR_ARTIFACT = "model_dir"  # the key of the model folder in the MLflow model's artifacts
IMAGE_COLUMN = "image"  # the input column: encoded image bytes, or file paths
DEFAULT_TOPK = 5  # as the servers answer without a topk option (dogbreed.serving.settings)

Image = bytes | str | Path


class BreedPyfunc(PythonModel):
    """predict(images, params={"topk": k}): one {"topk": [...]} per image, as the servers' "predictions"."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts[MODEL_DIR_ARTIFACT])

    # MLflow checks the input against the model's signature (one column of images, a `topk` param) and hands
    # predict a DataFrame; a DataFrame hint is one MLflow infers no schema from, so the signature rules.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        topk = int((params or {}).get("topk") or DEFAULT_TOPK)
        return top_k_answers(self.model, images_of(model_input), topk)


def top_k_answers(model: BreedModel, images: Iterable[Image], topk: int) -> list[dict[str, Any]]:
    """Each image's top-k breeds from the one predictor (BreedModel.predict), in the servers' shape."""
    return [{"topk": [asdict(p) for p in row]} for row in model.predict(images, topk)]


def images_of(model_input: Any) -> list[Image]:
    """The images of a pyfunc input: a pandas DataFrame (its `image` column, or its only column), a Series,
    a {"image": [...]} mapping, a list, or one image (bytes or a path)."""
    if isinstance(model_input, (bytes, bytearray, str, Path)):
        model_input = [model_input]
    columns = getattr(model_input, "columns", None)
    if columns is not None:
        if IMAGE_COLUMN not in columns and len(columns) != 1:
            raise ValueError(
                f"the input has columns {list(columns)}: give the images in a column named {IMAGE_COLUMN!r}"
            )
        model_input = model_input[IMAGE_COLUMN if IMAGE_COLUMN in columns else columns[0]]
    elif isinstance(model_input, Mapping):
        model_input = model_input[IMAGE_COLUMN]
    values = model_input.tolist() if hasattr(model_input, "tolist") else list(model_input)
    return [bytes(v) if isinstance(v, (bytearray, memoryview)) else v for v in values]


# What MLflow loads when it runs this file as the model's code.
set_model(BreedPyfunc())
