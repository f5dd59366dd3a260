"""Model work off the event loop: queued locate queries answered together on one thread.

Requests wait in a bounded queue; a single worker thread takes up to ``max_batch`` of them
(whatever has accumulated, plus what arrives within ``window_s``) and answers them with one
``locate_many`` call, whose text encoding is one batched forward. One thread keeps the model's
memory and threads to itself; the event loop stays free for ``/health``, tiles and the page.
When ``max_pending`` queries are already waiting a new one is refused at once (HTTP 503)
instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planetloc.errors import PlanetlocError
from planetloc.index.locate import LocateResult, Query


class Overloaded(Exception):
    """Too many queries are waiting; the caller should retry later."""


@dataclass
class _Job:
    query: Query
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class LocateBatcher:
    """Answers :class:`Query` objects on one worker thread, several per model call."""

    def __init__(
        self,
        locate_many: Callable[[list[Query]], list[LocateResult]],
        *,
        max_batch: int = 16,
        window_s: float = 0.002,
        max_pending: int = 256,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or window_s < 0:
            raise PlanetlocError("batching needs max_batch >= 1, max_pending >= 1, window_s >= 0")
        self.locate_many = locate_many
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_pending = max_pending
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Queries queued or being answered."""
        return self._pending

    async def locate(self, query: Query) -> LocateResult:
        """The answer to ``query``; raises :class:`Overloaded` when the queue is full."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pending >= self.max_pending:
                raise Overloaded(f"the server is busy ({self._pending} queries waiting)")
            self._pending += 1
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="locate", daemon=True)
                self._worker.start()
        job = _Job(query, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        """Stop the worker after the queries already queued."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.window_s
            stop = False
            while len(batch) < self.max_batch:
                try:
                    wait = deadline - time.monotonic()
                    job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._answer(batch)
            if stop:
                return

    def _answer(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]
        queries = [job.query for job in live]
        outcomes: list[tuple[Any, BaseException | None]] = []
        if live:
            try:
                outcomes = [(r, None) for r in self.locate_many(queries)]
            except PlanetlocError as err:
                # One bad query (an undecodable image, say) fails the whole call: answer each
                # on its own so that only the bad one gets the error.
                outcomes = [(None, err)] if len(live) == 1 else [self._one(q) for q in queries]
            except Exception as err:  # a bug: these requests get a 500, the worker lives on
                outcomes = [(None, err)] * len(live)
        for job, (result, error) in zip(live, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # that request's event loop is gone
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)
        with self._lock:
            self._pending -= len(batch)

    def _one(self, query: Query) -> tuple[Any, BaseException | None]:
        try:
            return self.locate_many([query])[0], None
        except Exception as err:
            return None, err
