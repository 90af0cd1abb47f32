"""SageMaker's four inference functions, implemented once for every server.

`serve/inference.py` (shipped as `code/inference.py` in model.tar.gz) re-exports these. Settings come
from the model's environment variables, the only channel SageMaker offers:
DOGBREED_DEVICE (auto|cpu|cuda), DOGBREED_OPTIMIZE (fuse|none|bf16), DOGBREED_TOPK, DOGBREED_THREADS and
the limits of `RequestLimits.from_env`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from dogbreed.serving.decoding import EncodedImage, RequestLimits, read_request
from dogbreed.serving.engine import InferenceEngine, available_cpus, configure_threads
from dogbreed.serving.errors import ServingError
from dogbreed.serving.responses import JSON_ACCEPT, build_response, encode_response, parse_output_options

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class PredictionBatch:
    probabilities: torch.Tensor
    class_names: list[str]


def toolkit_errors(func: F) -> F:
    """Re-raise our 4xx errors as the inference toolkit's own error type when it is installed, because
    the toolkit answers 500 to any other exception; outside the toolkit, leave them as they are."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ServingError as exc:
            try:
                from sagemaker_inference.errors import GenericInferenceToolkitError
            except ImportError:
                raise exc from None
            raise GenericInferenceToolkitError(exc.status, exc.message) from exc

    return wrapper  # type: ignore[return-value]


def thread_count_for_workers(environ: Mapping[str, str] = os.environ) -> int:
    """The model server runs SAGEMAKER_MODEL_SERVER_WORKERS processes (one per CPU by default):
    share the CPUs between them instead of letting each one start a thread per CPU."""
    if environ.get("DOGBREED_THREADS"):
        return int(environ["DOGBREED_THREADS"])
    workers = int(environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or available_cpus())
    return max(1, available_cpus() // max(1, workers))


def model_fn(model_dir: str) -> InferenceEngine:
    configure_threads(thread_count_for_workers())
    engine = InferenceEngine.load(
        model_dir,
        device=os.environ.get("DOGBREED_DEVICE", "auto"),
        optimize=os.environ.get("DOGBREED_OPTIMIZE", "fuse"),
    )
    engine.warm_up()
    return engine


@toolkit_errors
def input_fn(request_body: bytes | str, request_content_type: str) -> list[EncodedImage]:
    return read_request(request_body, request_content_type, RequestLimits.from_env())


@toolkit_errors
def predict_fn(images: list[EncodedImage], engine: InferenceEngine) -> PredictionBatch:
    return PredictionBatch(engine.predict_encoded(images), engine.class_names)


@toolkit_errors
def output_fn(prediction: PredictionBatch, accept: str | None) -> tuple[str, str]:
    options = parse_output_options(accept, default_topk=int(os.environ.get("DOGBREED_TOPK", "5")))
    body = build_response(prediction.probabilities, prediction.class_names, options)
    return encode_response(body), JSON_ACCEPT
