"""Dynamic batching: requests that arrive together share one forward pass.

The first waiting item opens a batch; the batch runs when it is full or `max_wait_ms` after it opened,
whichever comes first. While a batch runs, new items queue, so under load batches fill without waiting.
One inference thread runs batches one at a time, using all of torch's intra-op threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """What the batcher ran: the local server reports it at GET /stats."""

    batches: int = 0
    items: int = 0
    batch_sizes: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.items += size
            self.batch_sizes[size] += 1

    def to_json(self) -> dict:
        with self._lock:
            return {
                "batches": self.batches,
                "items": self.items,
                "max_batch_size_run": max(self.batch_sizes, default=0),
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            }


class DynamicBatcher(Generic[T, R]):
    """`await submit(item)` returns `run_batch([..., item, ...])[i]`; run_batch maps a list to a list."""

    def __init__(self, run_batch: Callable[[list[T]], Sequence[R]], max_batch_size: int, max_wait_ms: float):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be at least 1")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms={max_wait_ms} must not be negative")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the batching loop on the running event loop (call from the server's startup)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> R:
        if self._queue is None or not self.running:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _collect(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())  # already waiting: take it without a timer
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(self._queue.get())
            done, _ = await asyncio.wait({getter}, timeout=remaining)
            if not done:
                getter.cancel()
            try:  # a get that completed just as the timer fired still holds its item: keep it
                batch.append(await getter)
            except asyncio.CancelledError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled requests
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [i for i, _ in live])
            except Exception as exc:  # a fault of this batch goes to its requests, the loop goes on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.stats.record(len(live))
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
