"""An exported model folder logged as an MLflow model (the pyfunc of dogbreed.tracking.mlflow_pyfunc) and,
when a name is given, registered in MLflow's model registry (SageMaker's managed MLflow included).

The MLflow model holds the model folder as it is (its artifact `model_dir`: weights, model.json, the card,
SageMaker's code/), the package modules the pyfunc imports (code_paths), a signature (an `image` column of
bytes or paths, a `topk` param, the servers' answer) and an input example. Imported where MLflow is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from PIL import Image

from dogbreed.modeldir.archive import copy_package_modules
from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model

MODEL_NAME = "model"  # the logged model's name (its artifact path on MLflow 2 servers' runs)
PYFUNC_MODULE = "tracking/mlflow_pyfunc.py"  # what the model's code_paths start from
# The distributions the pyfunc's modules import (besides the standard library and MLflow, which MLflow
# lists itself); each pinned to the version that logged the model, without a local tag such as +cpu.
REQUIREMENTS = ("torch", "torchvision", "pillow", "numpy")
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def pip_requirements() -> list[str]:
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def example_image(model: BreedModel) -> bytes:
    """A plain grey PNG of the size the model resizes to: the input example stored with the model."""
    side = model.preprocessing.resize_size
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def log_mlflow_model(
    tracking_uri: str, run_id: str, model_dir: str | Path, registered_model_name: str | None = None
) -> Any:
    """Log `model_dir` as an MLflow model of run `run_id` (registered as `registered_model_name` when
    given); returns MLflow's ModelInfo (model_uri loads it; registered_model_version names the version)."""
    import mlflow
    import pandas as pd
    from mlflow.models import Model, infer_signature

    from dogbreed.tracking import mlflow_pyfunc

    model = load_model(model_dir)
    image = example_image(model)
    answers = mlflow_pyfunc.top_k_answers(model, [image], mlflow_pyfunc.DEFAULT_TOPK)
    # One unnamed column of images: a list, a Series or a one-column DataFrame (whatever its column's name)
    # all fit it; a column of paths (strings) passes MLflow's check of a binary column as it is.
    signature = infer_signature([image], answers, params={"topk": mlflow_pyfunc.DEFAULT_TOPK})
    # The example as a DataFrame: MLflow's REST form of it (dataframe_split) carries the bytes as base64,
    # which its scoring server decodes for a binary column.
    example = pd.DataFrame({mlflow_pyfunc.IMAGE_COLUMN: [image]})
    # Model.log logs through MLflow's current tracking URI: the run's own, whichever logger set it last.
    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.MlflowClient(tracking_uri).get_run(run_id)
    # Created here, in the run's experiment: left to itself, Model.log puts a model logged for a run that is
    # not the active one into MLflow's default experiment.
    logged = mlflow.initialize_logged_model(
        name=MODEL_NAME,
        source_run_id=run_id,
        experiment_id=run.info.experiment_id,
        params=dict(run.data.params),  # as Model.log copies them
    )
    with tempfile.TemporaryDirectory(prefix="dogbreed-pyfunc-") as scratch, quiet_model_logging():
        code = copy_package_modules(Path(scratch), PYFUNC_MODULE)
        return Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            registered_model_name=registered_model_name,
            python_model=mlflow_pyfunc.__file__,  # models from code: the file, not a pickled object
            artifacts={mlflow_pyfunc.MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )


@contextlib.contextmanager
def quiet_model_logging() -> Iterator[None]:
    """Without MLflow's progress lines while it logs the model (validating the input example, waiting for
    the registry; its warnings stay) and the progress bar of the copy it validates the example on."""
    previous = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        mlflow_logger.setLevel(level)
        if previous is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = previous
