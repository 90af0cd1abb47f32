"""SageMaker's inference functions, implemented once for every server.

`serve/inference.py` (shipped as `code/inference.py` in model.tar.gz) re-exports `model_fn` and
`transform_fn`. The toolkit answers any exception with its message followed by a Python traceback, as plain
text; `transform_fn` therefore answers errors itself: the status on TorchServe's context and the same short
JSON body as the local server. `input_fn`/`predict_fn`/`output_fn` remain for callers outside the toolkit
(the toolkit refuses a module offering both); a request takes the same path through them as through
`transform_fn` (`predict_request`). Settings come from the model's environment variables, the only channel
SageMaker offers, read by serving/settings.py `endpoint_settings` into the local server's ServerSettings
(same defaults): DOGBREED_DEVICE (auto|cpu|cuda), DOGBREED_ENGINE (auto|openvino|onnxruntime|torch, as
`server.engine`), DOGBREED_OPTIMIZE (fuse|none|bf16, torch only), DOGBREED_TOPK, DOGBREED_THREADS and the
request limits (DOGBREED_MAX_PIXELS, ...).
"""

from __future__ import annotations

import functools
import http
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from dogbreed.serving.decoding import read_request
from dogbreed.serving.engine import InferenceEngine, available_cpus, configure_threads, resolve_device
from dogbreed.serving.errors import InternalServerError, ServingError
from dogbreed.serving.explain import explainer_for
from dogbreed.serving.faults import RateLimitedFaultLog
from dogbreed.serving.responses import JSON_ACCEPT, build_response, encode_response, parse_output_options
from dogbreed.serving.settings import endpoint_settings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
faults = RateLimitedFaultLog(log)


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
    threads = endpoint_settings(environ).threads
    if threads is not None:
        return threads
    workers = int(environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or available_cpus())
    return max(1, available_cpus() // max(1, workers))


def model_fn(model_dir: str) -> InferenceEngine:
    settings = endpoint_settings()
    threads = configure_threads(thread_count_for_workers())
    engine = InferenceEngine.load(
        model_dir,
        device=settings.device,
        optimize=settings.optimize,
        engine=settings.engine,
        threads=threads,
    )
    engine.warm_up()
    log.info("model %s loaded, serving with %s", model_dir, engine.name)
    return engine


@dataclass(frozen=True)
class ReceivedRequest:
    """A request body as input_fn received it: checked and decoded in predict_fn, where the model's decode
    size is known, by the same function as transform_fn."""

    body: bytes | str
    content_type: str | None


def preprocess_request(engine: InferenceEngine, body: bytes | str, content_type: str | None) -> torch.Tensor:
    """The one way a handler turns a request into the network's input: read and check it against the model
    environment's limits with the model's JPEG draft size, as the local server does, then decode."""
    images = read_request(body, content_type, endpoint_settings().limits, engine.draft_size)
    return engine.preprocess_encoded(images)


def predict_request(engine: InferenceEngine, body: bytes | str, content_type: str | None) -> torch.Tensor:
    """Probabilities [N, C] of a request's images."""
    return engine.probabilities(preprocess_request(engine, body, content_type))


@toolkit_errors
def input_fn(request_body: bytes | str, request_content_type: str) -> ReceivedRequest:
    return ReceivedRequest(request_body, request_content_type)


@toolkit_errors
def predict_fn(request: ReceivedRequest, engine: InferenceEngine) -> PredictionBatch:
    return PredictionBatch(predict_request(engine, request.body, request.content_type), engine.class_names)


@toolkit_errors
def output_fn(prediction: PredictionBatch, accept: str | None) -> tuple[str, str]:
    options = parse_output_options(accept, default_topk=endpoint_settings().default_topk)
    body = build_response(prediction.probabilities, prediction.class_names, options)
    return encode_response(body), JSON_ACCEPT


def transform_fn(
    engine: InferenceEngine,
    request_body: bytes | str,
    content_type: str | None,
    accept: str | None,
    context: Any = None,
) -> tuple[str, str]:
    """One request, answered in full: the prediction, or the error as the local server words it.

    Under the toolkit `context` is TorchServe's (the toolkit passes it to a function taking one more
    argument); the error's status goes there. Without a context, errors are raised."""
    try:
        settings = endpoint_settings()
        options = parse_output_options(accept, default_topk=settings.default_topk)
        batch = preprocess_request(engine, request_body, content_type)
        body = build_response(engine.probabilities(batch), engine.class_names, options)
        if options.explain:
            device = resolve_device(settings.device)
            explainer_for(engine.model_dir, device).add_heatmaps(body, batch)
        return encode_response(body), JSON_ACCEPT
    except ServingError as exc:
        if context is None:
            raise
        error = exc
    except Exception:
        if context is None:
            raise
        faults.fault("fault while answering a request")
        error = InternalServerError()
    context.set_response_status(code=error.status, phrase=http.HTTPStatus(error.status).phrase)
    return error.body(), JSON_ACCEPT
