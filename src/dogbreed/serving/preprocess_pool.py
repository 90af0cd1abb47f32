"""The local server's preprocessing: each request parsed, checked, decoded and transformed in a worker
process, under a deadline.

A thread cannot be stopped: an image that is slow to decode (a progressive JPEG of a thousand scans) would
hold its thread, and a core, until it is done, and every request behind it would wait. A process can be
stopped: a request still decoding past its budget is answered 413, and its worker is killed and replaced,
so no request takes more than its budget of CPU time. The budget is `limits.decode_timeout_s` for reading
the request and its image headers, plus `limits.decode_s_per_megapixel` for each megapixel those headers
say decoding will produce: a large photo gets the time it needs, a small file that decodes slowly does not.
With two workers or more, an ordinary request finds a free one while a slow one decodes.

Workers are forked from multiprocessing's fork server, which imports torch and Pillow once
(serving/fork_server_preload.py): a replacement starts without importing them again, and shares those
pages. The server process itself, whose threads may hold locks, is never forked. A worker is handed a
request only once it has started, so its start is never charged to a request's budget.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import torch
from PIL import Image

from dogbreed.serving.decoding import EncodedImage, RequestLimits, read_request
from dogbreed.serving.engine import transform_encoded
from dogbreed.serving.errors import PayloadTooLargeError, ServingError
from dogbreed.serving.settings import DecodeBudget

log = logging.getLogger(__name__)
WORKER_STOP_TIMEOUT_S = 10.0
# A worker's start: the fork, and re-importing the main module as multiprocessing does. Not charged to a
# request: the worker is handed out only once it says it is ready.
WORKER_START_TIMEOUT_S = 120.0


class PreprocessFault(RuntimeError):
    """A worker failed on a request for a reason other than the request (its traceback is the message),
    or died while decoding it."""


@dataclass(frozen=True)
class RequestPreprocessor:
    """What a worker runs for one request: the images of a body, checked against the limits, decoded and
    transformed as the model evaluates them. Picklable: it is sent to each worker once, at its start."""

    limits: RequestLimits
    transform: Callable[[Image.Image], torch.Tensor]
    draft_size: int | None

    def check(self, body: bytes, content_type: str | None) -> list[EncodedImage]:
        return read_request(body, content_type, self.limits, self.draft_size)

    def decode(self, images: list[EncodedImage]) -> np.ndarray:
        # A plain array crosses the pipe as bytes; a tensor would go through torch's shared-memory
        # reductions, which a killed worker can leave behind.
        return transform_encoded(images, self.transform, self.draft_size).numpy()

    def warm_up(self) -> None:
        """One tiny image through every step, so the lazy imports (Pillow's plugins) are not a request's."""
        with io.BytesIO() as png:
            Image.new("RGB", (1, 1)).save(png, "PNG")
            try:
                self.decode(self.check(png.getvalue(), "image/png"))
            except ServingError:  # limits that refuse even this: the requests will say so
                pass


def _serve(conn: Connection, preprocessor: RequestPreprocessor) -> None:
    """A worker's loop, one request at a time until the server closes the pipe: ("checked", decoded
    pixels) once the headers are read, then ("ok", array); or one ("refused", error) or ("fault", text)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its workers
    torch.set_num_threads(1)  # the transform is small; the cores belong to the other workers and the network
    preprocessor.warm_up()
    conn.send(("ready", None))
    while True:
        try:
            body, content_type = conn.recv()
        except (EOFError, OSError):
            return
        try:
            images = preprocessor.check(body, content_type)
            conn.send(("checked", sum(image.decoded_pixels for image in images)))
            outcome: tuple[str, object] = ("ok", preprocessor.decode(images))
        except ServingError as exc:
            outcome = ("refused", exc)
        except Exception:
            outcome = ("fault", traceback.format_exc())
        conn.send(outcome)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dogbreed.serving.fork_server_preload"])
    return context


def start_fork_server() -> None:
    """Start the fork server now (it imports torch: seconds), e.g. while the model loads, so that the
    workers start at once later. Blocking; a no-op where there is none or it runs already."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


class Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, context: multiprocessing.context.BaseContext, preprocessor: RequestPreprocessor):
        self.conn, child = context.Pipe()
        self.process = context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child, preprocessor), name="dogbreed-preprocess", daemon=True
        )
        self.process.start()
        child.close()

    def wait_ready(self) -> Worker:
        """Block until the worker can take a request; a worker that cannot is stopped (RuntimeError)."""
        try:
            ready = self.conn.poll(WORKER_START_TIMEOUT_S) and self.conn.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.stop()
            raise RuntimeError(f"a preprocessing worker did not start (exit code {self.process.exitcode})")
        return self

    def call(self, body: bytes, content_type: str | None, budget: DecodeBudget) -> tuple[str, object]:
        """The worker's outcome, or ("timeout", seconds allowed) when it is not done within its budget."""
        start = time.monotonic()
        self.conn.send((body, content_type))
        allowed = budget.seconds()
        while True:
            remaining = None if allowed is None else max(0.0, start + allowed - time.monotonic())
            if not self.conn.poll(remaining):
                return "timeout", allowed
            status, value = self.conn.recv()
            if status != "checked":
                return status, value
            allowed = budget.seconds(value)

    def stop(self) -> None:
        self.process.kill()
        self.process.join(WORKER_STOP_TIMEOUT_S)
        self.conn.close()


class PreprocessPool:
    """`await pool.run(body, content_type)`: the request's images as [N, 3, H, W], a ServingError for a
    request at fault (PayloadTooLargeError past the deadline), or PreprocessFault."""

    def __init__(self, preprocessor: RequestPreprocessor, workers: int, budget: DecodeBudget):
        if workers < 1:
            raise ValueError(f"preprocess_workers={workers} must be at least 1")
        self.preprocessor = preprocessor
        self.size = workers
        self.budget = budget
        self.busy = 0
        self.timeouts = 0
        self._context = _context()
        self._workers: list[Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._idle: asyncio.Queue[Worker] | None = None
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")

    def start(self) -> None:
        """Start the workers (blocking: the first start also starts the fork server, which takes seconds);
        call `bind` on the event loop afterwards."""
        self._workers = [Worker(self._context, self.preprocessor) for _ in range(self.size)]
        for worker in self._workers:
            worker.wait_ready()

    def bind(self) -> None:
        """Make the started workers available to `run` on the running event loop."""
        self._idle = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    @property
    def alive(self) -> int:
        """Workers whose process runs (a killed one is replaced at once)."""
        with self._lock:
            return sum(worker.process.is_alive() for worker in self._workers)

    async def run(self, body: bytes, content_type: str | None) -> torch.Tensor:
        if self._idle is None:
            raise RuntimeError("the preprocessing pool is not started")
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        self.busy += 1
        # The thread gives the worker back itself, replaced if need be, even if this request is cancelled.
        status, value = await loop.run_in_executor(
            self._threads, self._call, loop, worker, body, content_type
        )
        if status == "ok":
            return torch.from_numpy(value)
        if status == "refused":
            raise value  # type: ignore[misc]
        if status == "timeout":
            self.timeouts += 1
            raise PayloadTooLargeError(
                f"this request was still decoding after {value:.1f} s, the server's limit for its images "
                "(set by their size): send smaller images, or fewer in one request"
            )
        raise PreprocessFault(str(value))

    def _call(
        self, loop: asyncio.AbstractEventLoop, worker: Worker, body: bytes, content_type: str | None
    ) -> tuple[str, object]:
        outcome: tuple[str, object] = ("fault", "the preprocessing worker could not be reached")
        try:
            if not worker.process.is_alive():
                worker = self._replace(worker)
            outcome = worker.call(body, content_type, self.budget)
        except (EOFError, OSError):  # the worker died while decoding (killed for its memory, say)
            outcome = ("fault", f"the preprocessing worker died (exit code {worker.process.exitcode})")
        finally:
            if outcome[0] in ("timeout", "fault"):
                worker.stop()  # its core is free before the answer goes out; the replacement starts after
                self._start_after(self._replace_and_give_back, loop, worker)
            else:
                self._give_back(loop, worker)
        return outcome

    def _start_after(self, task: Callable[..., None], *args: object) -> None:
        try:  # on a thread of the pool once this one is free: each worker has a thread of its own
            self._threads.submit(task, *args)
        except RuntimeError:  # the pool has shut down: so has the server
            pass

    def _replace_and_give_back(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        self._give_back(loop, self._replace(worker))

    def _give_back(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        def on_loop() -> None:
            self.busy -= 1
            assert self._idle is not None
            self._idle.put_nowait(worker)

        try:
            loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # the loop has closed: the server is shutting down
            pass

    def _replace(self, worker: Worker) -> Worker:
        """Stop `worker` and start another in its place; on failure the stopped one stays, and the next
        request on it tries again (and gets a fault meanwhile)."""
        worker.stop()
        if self._closed:
            return worker
        try:
            replacement = Worker(self._context, self.preprocessor).wait_ready()
        except Exception:
            log.exception("could not start a preprocessing worker")
            return worker
        with self._lock:
            self._workers[self._workers.index(worker)] = replacement
        return replacement

    def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
