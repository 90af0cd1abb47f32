"""The local HTTP server with SageMaker's container contract: GET /ping, POST /invocations on port 8080.

Errors are JSON `{"error", "status", "message"}`: 4xx for requests at fault, 500 only for server faults
(logged once with one traceback, rate-limited; the answer carries no traceback). Every error answer is a
complete response, so the connection stays usable, or says `Connection: close` when the client stopped
sending its body. Parsing, header checks and decoding run in worker processes under a deadline
(serving/preprocess_pool.py), never on the event loop, so /ping answers at once whatever the requests in
flight, and one slow image holds up no other request.
Past `max_queue` images waiting, requests are answered 503 with Retry-After at once (serving/admission.py).
GET /stats reports what the dynamic batcher ran (batch sizes), the engine, the images waiting and the
preprocessing workers, for tests and load checks. A path is matched exactly: `/invocations/` is 404, never
a redirect (whose Location would be built from the client's Host header).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from dogbreed.serving.admission import AdmissionLimit
from dogbreed.serving.batching import DynamicBatcher
from dogbreed.serving.engine import InferenceEngine, available_cpus, configure_threads, resolve_device
from dogbreed.serving.errors import (
    InternalServerError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    ServingError,
)
from dogbreed.serving.explain import Explainer, explainer_for
from dogbreed.serving.faults import RateLimitedFaultLog
from dogbreed.serving.page import add_page
from dogbreed.serving.preprocess_pool import PreprocessPool, RequestPreprocessor, start_fork_server
from dogbreed.serving.responses import JSON_ACCEPT, build_response, encode_response, parse_output_options
from dogbreed.serving.settings import ServerSettings

log = logging.getLogger(__name__)


async def read_body_within(request: Request, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it passes `max_bytes` (never buffered whole first), and with
    408 when it has not all arrived within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"request body is {declared} bytes, over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0

    async def receive() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(f"request body is over the limit of {max_bytes} bytes")
            chunks.append(chunk)

    try:  # wait_for, not asyncio.timeout: the latter is Python 3.11+
        await asyncio.wait_for(receive(), timeout_s)
    except (TimeoutError, asyncio.TimeoutError):
        raise RequestTimeoutError(
            f"request body not received within {timeout_s:g} s ({size} bytes arrived)"
        ) from None
    return b"".join(chunks)


def error_response(exc: ServingError, close: bool = False) -> Response:
    """The JSON error; `close` tells the client this connection ends here."""
    headers = {"Connection": "close"} if close else {}
    if isinstance(exc, ServiceUnavailableError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return Response(exc.body(), status_code=exc.status, headers=headers, media_type=JSON_ACCEPT)


def create_app(model_dir: str | Path, settings: ServerSettings | None = None) -> FastAPI:
    """The app loads the model at startup, so /ping answers 200 only once the model is ready."""
    settings = settings or ServerSettings()
    state: dict = {}  # engine, batcher, pool: set by the lifespan once the model is loaded
    admission = AdmissionLimit(settings.max_queue, settings.retry_after_s)
    app = FastAPI(
        title="dogbreed", lifespan=model_lifespan(model_dir, settings, state), redirect_slashes=False
    )
    app.state.serving = state
    if settings.page:
        add_page(app, model_dir, state)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> Response:
        return error_response(exc)

    add_status_routes(app, state, admission)
    explainer = explainer_for(model_dir, resolve_device(settings.device))
    app.post("/invocations")(invocation_handler(settings, state, admission, explainer))
    return app


def model_lifespan(model_dir: str | Path, settings: ServerSettings, state: dict) -> Callable:
    """Load the model, warm it up and start the batcher and the preprocessing workers; stop them at exit."""

    def run_batch(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(state["engine"].probabilities(torch.stack(tensors)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = configure_threads(settings.threads)
        engine, _ = await asyncio.gather(
            asyncio.to_thread(
                InferenceEngine.load, model_dir, settings.device, settings.optimize, settings.engine, threads
            ),
            asyncio.to_thread(start_fork_server),
        )
        await asyncio.to_thread(engine.warm_up, settings.max_batch_size)
        batcher = DynamicBatcher(run_batch, settings.max_batch_size, settings.max_wait_ms)
        pool = PreprocessPool(
            RequestPreprocessor(settings.limits, engine.transform, engine.draft_size),
            settings.preprocess_workers or max(2, available_cpus() // 2),
            settings.decode_budget,
        )
        await asyncio.to_thread(pool.start)
        pool.bind()
        state.update(engine=engine, batcher=batcher, pool=pool)
        batcher.start()
        log.info(
            "model %s loaded (%s, %d classes), serving with %s",
            model_dir,
            engine.arch,
            engine.num_classes,
            engine.name,
        )
        try:
            yield
        finally:
            await batcher.stop()
            pool.close()

    return lifespan


def add_status_routes(app: FastAPI, state: dict, admission: AdmissionLimit) -> None:
    """GET /ping (200 once the model is ready) and GET /stats (what the batcher and the workers did)."""

    @app.api_route("/ping", methods=["GET", "HEAD"])
    async def ping() -> Response:
        batcher = state.get("batcher")
        if batcher is None or not batcher.running:
            return JSONResponse({"status": "loading"}, status_code=503)
        # A stalled decode cannot hide behind this 200: no request decodes for longer than
        # limits.decode_timeout_s, and a dead worker is replaced by the next request that needs it.
        return JSONResponse({"status": "ok"})

    @app.get("/stats")
    async def stats() -> dict:
        batcher = state["batcher"]
        return {
            **batcher.stats.to_json(),
            "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": batcher.max_wait * 1000,
            "torch_threads": torch.get_num_threads(),
            "engine": state["engine"].name,
            "queued_images": admission.waiting,
            "max_queue": admission.max_images,
            "preprocess_workers": state["pool"].size,
            "preprocess_workers_alive": state["pool"].alive,
            "preprocess_workers_busy": state["pool"].busy,
            "decode_timeouts": state["pool"].timeouts,
        }


def invocation_handler(
    settings: ServerSettings, state: dict, admission: AdmissionLimit, explainer: Explainer
) -> Callable[[Request], Awaitable[Response]]:
    """POST /invocations: admit, read the body, preprocess it in a worker, batch, answer."""
    faults = RateLimitedFaultLog(log)

    async def invocations(request: Request) -> Response:
        # Every outcome is answered here, as a whole response: an exception left to Starlette would be
        # logged twice and the keep-alive connection dropped without a word to the client.
        held = 0
        try:
            admission.reserve(1)  # before the body is read: a saturated server answers at once
            held = 1
            options = parse_output_options(
                request.headers.get("accept"), request.query_params, default_topk=settings.default_topk
            )
            body = await read_body_within(request, settings.limits.max_body_bytes, settings.body_timeout_s)
            batch = await state["pool"].run(body, request.headers.get("content-type"))
            held = 0
            admission.resize(1, len(batch))
            held = len(batch)
            rows = await asyncio.gather(*(state["batcher"].submit(t) for t in batch))
            response = build_response(torch.stack(rows), state["engine"].class_names, options)
            if options.explain:  # its images stay admitted, so heat maps count against max_queue too
                response = await explainer.add_heatmaps_async(response, batch)
            return Response(encode_response(response), media_type=JSON_ACCEPT)
        except ServingError as exc:
            # A body refused part-way is drained by uvicorn once the answer is sent, so the connection
            # stays usable; a client that stopped sending would never finish it: that one is closed.
            return error_response(exc, close=isinstance(exc, RequestTimeoutError))
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it: the client has gone
        except Exception:
            faults.fault("fault while answering %s %s", request.method, request.url.path)
            return error_response(InternalServerError())
        finally:
            admission.release(held)

    return invocations
