"""Coalescing calls into batches: one Redis round trip for everything asked at about once.

Callers `await batcher.submit(item)`. The first one starts a flush; everything submitted while
a flush runs goes into the next one. So at low load each call costs one round trip, as before,
and under load a round trip serves however many calls queued up during the previous one,
with no timer and no added latency.

Every caller gets an answer: its result, or the exception the flush raised — also when a flush
returns the wrong number of results (a bug in it, reported to each caller rather than leaving
them all waiting for ever) or the batcher's task itself is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Batcher(Generic[T, R]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], *, max_size: int = 256,
                 name: str = "batch") -> None:
        self._flush = flush
        self._max_size = max_size
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        # A caller cancelled while waiting does not cancel the flush: its item is still written.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = self._pending[:self._max_size]
                del self._pending[:self._max_size]
                try:
                    results = await self._flush([item for item, _ in batch])
                    if len(results) != len(batch):  # a bug in the flush: say so to everyone
                        raise RuntimeError(f"{self._name}: the flush returned {len(results)} "
                                           f"results for {len(batch)} items")
                except Exception as exc:  # noqa: BLE001 (each caller gets the error)
                    log.debug("batch flush failed", extra={"batch": self._name,
                                                           "error": repr(exc)})
                    _fail(batch, exc)
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        except BaseException:  # cancelled (shutdown): nobody is left waiting
            _cancel(batch)
            pending, self._pending = self._pending, []
            _cancel(pending)
            raise
        finally:
            self._task = None


def _fail(batch: list[tuple[T, asyncio.Future[R]]], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _cancel(batch: list[tuple[T, asyncio.Future[R]]]) -> None:
    for _, future in batch:
        future.cancel()  # a no-op once done
