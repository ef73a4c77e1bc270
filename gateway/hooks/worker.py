"""The hook worker: matcher, delivery loop and scheduler, inline in `gateway serve` or alone.

    gw:hooks:inbox ──matcher──► gw:hooks:jobs ──delivery loop──► POST target
                                     ▲                              │ outcome recorded and job
                                     │ due retries promoted         │ acked in one script
                               gw:hooks:delayed ◄───────────────────┘ (failed: schedule a retry)

Jobs are read with XREADGROUP in the "delivery" group, so several workers share them and each
job goes to one worker. Redis round trips are shared: a batch read brings each job's delivery
and hook in one script (DeliveryQueue.take), the "is the hook still there" check right before
each POST and the outcome writes are coalesced across concurrent attempts (gateway.hooks.batch),
so under load a delivery costs a fraction of a round trip instead of four. A job stays in its worker's pending list until its outcome is recorded;
the worker touches its in-flight jobs every HEARTBEAT_S (XCLAIM to itself, resetting their idle
time), and any worker reclaims jobs idle longer than the visibility timeout (hook timeout +
VISIBILITY_MARGIN_S) with XAUTOCLAIM: those of a killed worker. On SIGTERM a worker stops
reading, lets running attempts finish (they are bounded by the hook timeout), and hands back
the ones that had not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time

from prometheus_client import start_http_server
from redis.typing import StreamIdT

from gateway import codec
from gateway.hooks.batch import Batcher
from gateway.hooks.delivery import Deliverer
from gateway.hooks.matcher import Matcher
from gateway.hooks.queue import DELIVERY_GROUP, DeliveryQueue, Job, Settlement
from gateway.hooks.store import Hook, Hooks
from gateway.metrics import Metrics
from gateway.settings import HookSettings, Settings
from gateway.store import keys
from gateway.store.redis import Redis, client_for
from gateway.store.replies import stream_read
from gateway.store.users import Users

log = logging.getLogger(__name__)

VISIBILITY_MARGIN_S = 3.0
HEARTBEAT_S = 1.0
PROMOTE_EVERY_S = 0.05
# A job for a target with a full backlog and no attempt finished for this long (it hangs) is put
# back for this long, unattempted, so a hanging target can't fill the in-flight set.
BUSY_TARGET_DEFER_S = 1.0
# A consumer of the "delivery" group idle this long (many visibility timeouts: a live worker
# polls every 0.5 s) with no pending job is a worker that died; it is removed from the group.
# GATEWAY__HOOK_DEAD_CONSUMER_S (internal, for tests) overrides it.
DEAD_CONSUMER_S = float(os.environ.get("GATEWAY__HOOK_DEAD_CONSUMER_S") or 3600)
SWEEP_CONSUMERS_EVERY_S = min(60.0, DEAD_CONSUMER_S / 2)
READ_BATCH = 128  # jobs read at once
MAX_IN_FLIGHT = 512  # jobs held by one worker, running or waiting for their target's turn
CONCURRENCY = 256  # requests at once, over all targets
PER_TARGET = 32  # requests at once to one target (host and port)


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class HookWorker:
    """A Component (start/stop) delivering hooks from the shared queue."""

    def __init__(self, redis: Redis, *, settings: HookSettings, metrics: Metrics, users: Users,
                 max_in_flight: int = MAX_IN_FLIGHT, concurrency: int = CONCURRENCY,
                 per_host: int = PER_TARGET) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        self._consumer = consumer_name()
        self._hooks = Hooks(redis)
        self._queue = DeliveryQueue(redis, retry_schedule_s=settings.retry_schedule_s)
        self._matcher = Matcher(redis, hooks=self._hooks, queue=self._queue, users=users,
                                consumer=self._consumer)
        self._deliverer: Deliverer | None = None
        self._concurrency = concurrency
        self._per_host = per_host
        self._max_in_flight = max_in_flight
        self._visibility_ms = int((settings.timeout_s + VISIBILITY_MARGIN_S) * 1000)
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._settle: Batcher[Settlement, str] = Batcher(self._queue.settle, name="hook-settle")
        self._present: Batcher[str, bool] = Batcher(self._hooks_present, name="hook-present")
        self._hook_records: dict[bytes, Hook] = {}
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._queue.ensure_groups()
        self._deliverer = Deliverer(timeout_s=self._settings.timeout_s,
                                    allow_private=self._settings.allow_private,
                                    concurrency=self._concurrency, per_host=self._per_host)
        self._loops = [asyncio.create_task(self._matcher.run(self._stopping), name="hook-matcher"),
                       asyncio.create_task(self._read_jobs(), name="hook-jobs"),
                       asyncio.create_task(self._maintain(), name="hook-scheduler")]
        log.info("hook worker started", extra={"consumer": self._consumer,
                                               "visibility_ms": self._visibility_ms})

    async def stop(self) -> None:
        self._stopping.set()
        self._room.set()
        readers, maintainer = self._loops[:2], self._loops[2:]
        # The readers block for at most 1 s; then no new job is taken.
        _done, late = await asyncio.wait(readers, timeout=2) if readers else (set(), set())
        for task in late:
            task.cancel()
        if self._in_flight:
            log.info("hook worker finishing attempts", extra={"in_flight": len(self._in_flight)})
            _done, late = await asyncio.wait(list(self._in_flight),
                                             timeout=self._settings.timeout_s + 1)
            for task in late:
                task.cancel()  # the task hands its job back to the queue
            if late:
                await asyncio.wait(late, timeout=2)
        for task in maintainer:
            task.cancel()
        # Bounded: a task stuck in a Redis call must not keep the process from exiting.
        _done, stuck = await asyncio.wait(self._loops, timeout=2)
        if stuck:
            log.warning("hook worker tasks did not stop", extra={
                "tasks": [f"{t.get_name()}: {t.get_stack(limit=3)}" for t in stuck]})
        if self._deliverer is not None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(self._deliverer.aclose(), 2)
        log.info("hook worker stopped", extra={"consumer": self._consumer})

    # Reading jobs -------------------------------------------------------------------------

    async def _read_jobs(self) -> None:
        next_claim = 0.0
        while not self._stopping.is_set():
            await self._room.wait()
            if self._stopping.is_set():
                return
            free = self._max_in_flight - len(self._in_flight)
            try:
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + HEARTBEAT_S
                    entries = await self._reclaim(free)
                else:
                    entries = stream_read(await self._redis.xreadgroup(
                        DELIVERY_GROUP, self._consumer, {keys.HOOK_JOBS: ">"},
                        count=min(free, READ_BATCH), block=500))
                pairs = [(entry_id.decode(), (fields or {}).get(b"d", b"").decode())
                         for entry_id, fields in entries]
                jobs = await self._queue.take([did for _entry, did in pairs if did])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading hook jobs failed; retrying in 1 s")
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    await self._queue.ensure_groups()
                continue
            found = iter(jobs)
            for entry_id, delivery_id in pairs:
                self._spawn(entry_id, delivery_id, next(found) if delivery_id else None)

    async def _reclaim(self, free: int) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        """Jobs of dead workers: pending in the group and untouched for the visibility timeout."""
        reply = await self._redis.xautoclaim(keys.HOOK_JOBS, DELIVERY_GROUP, self._consumer,
                                             self._visibility_ms, "0-0", count=free)
        if reply[1]:
            log.warning("hook jobs reclaimed from a stalled worker", extra={"count": len(reply[1])})
        return list(reply[1])

    def _spawn(self, entry_id: str, delivery_id: str, job: Job | None) -> None:
        task = asyncio.create_task(self._handle(entry_id, delivery_id, job),
                                   name=f"hook-delivery:{delivery_id}")
        self._in_flight[task] = entry_id
        if len(self._in_flight) >= self._max_in_flight:
            self._room.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._room.set()

    # One job ------------------------------------------------------------------------------

    async def _hooks_present(self, hook_ids: list[str]) -> list[bool]:
        distinct = list(dict.fromkeys(hook_ids))
        present = dict(zip(distinct, await self._queue.present(distinct), strict=True))
        return [present[hook_id] for hook_id in hook_ids]

    def _hook(self, record: bytes) -> Hook:
        """The hook from its stored record, decoded once per version of the record."""
        hook = self._hook_records.get(record)
        if hook is None:
            if len(self._hook_records) > 10_000:
                self._hook_records.clear()
            hook = self._hook_records[record] = Hook.from_record(codec.unpack(record))
        return hook

    async def _handle(self, entry_id: str, delivery_id: str, job: Job | None) -> None:
        assert self._deliverer is not None
        started = False
        try:
            if job is None:  # the hook was deleted, or the log trimmed
                await self._settle.submit(Settlement.release(entry_id, delivery_id, delay_s=None))
                return
            hook = self._hook(job.hook_record)
            if self._deliverer.stalled(hook.target_url, backlog=self._per_host * 4,
                                       for_s=BUSY_TARGET_DEFER_S):
                await self._settle.submit(Settlement.release(entry_id, delivery_id,
                                                             delay_s=BUSY_TARGET_DEFER_S))
                return

            async def still_wanted() -> bool:
                nonlocal started
                if self._stopping.is_set():
                    return False
                started = await self._present.submit(hook.id)
                return started

            attempt = await self._deliverer.attempt(
                url=hook.target_url, secret=hook.secret, msg_id=job.event_id, body=job.body,
                still_wanted=still_wanted)
            if attempt is None:  # stopping (hand it back) or the hook was deleted (drop it)
                await self._settle.submit(Settlement.release(
                    entry_id, delivery_id, delay_s=0 if self._stopping.is_set() else None))
                return
            self._metrics.hook_attempt_latency.observe(attempt.duration_ms / 1000)
            if attempt.gone:
                await self._hooks.delete(hook)
                await self._settle.submit(Settlement.release(entry_id, delivery_id, delay_s=None))
                result = "gone"
                log.info("hook deleted: its target answered 410",
                         extra={"hook": hook.id, "delivery": delivery_id})
            else:
                result = await self._settle.submit(Settlement.outcome(
                    entry_id, delivery_id, hook.id, attempt.record(), attempt.succeeded))
            self._metrics.hook_deliveries.labels(result).inc()
        except asyncio.CancelledError:
            # Shutting down with the attempt unfinished: give the job back for another worker.
            # (If the request had gone out, the target may see it twice: at least once.)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._queue.settle(
                    [Settlement.release(entry_id, delivery_id, delay_s=0)]))
            log.warning("hook delivery handed back", extra={"delivery": delivery_id,
                                                            "sent": started})
            raise
        except Exception:
            # Left pending: reclaimed after the visibility timeout.
            log.exception("hook delivery failed", extra={"delivery": delivery_id})

    # Scheduling, heartbeat, metrics -------------------------------------------------------

    async def _maintain(self) -> None:
        next_beat = 0.0
        next_sweep = time.monotonic() + SWEEP_CONSUMERS_EVERY_S
        # Checked each round, not left to cancel(): redis-py can swallow a cancellation that
        # lands inside a command, and the loop would then run on after stop().
        while not self._stopping.is_set():
            try:
                await self._queue.promote()
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + SWEEP_CONSUMERS_EVERY_S
                    removed = await self._queue.remove_dead_consumers(
                        idle_ms=int(DEAD_CONSUMER_S * 1000), keep=self._consumer)
                    if removed:
                        log.info("dead hook consumers removed", extra={"consumers": removed})
                if now >= next_beat:
                    next_beat = now + HEARTBEAT_S
                    await self._heartbeat()
                    depth, oldest = await self._queue.depth()
                    self._metrics.hook_queue_depth.set(depth)
                    self._metrics.hook_oldest_pending.set(oldest)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hook scheduler failed; retrying in 1 s")
                await asyncio.sleep(1)
            await asyncio.sleep(PROMOTE_EVERY_S)

    async def _heartbeat(self) -> None:
        """Reset the idle time of our in-flight jobs so no other worker reclaims them."""
        ids: list[StreamIdT] = list(self._in_flight.values())
        if ids:
            await self._redis.xclaim(keys.HOOK_JOBS, DELIVERY_GROUP, self._consumer, 0, ids,
                                     justid=True)


def serve_metrics(metrics: Metrics) -> None:
    """Serve /metrics on GATEWAY_WORKER_METRICS_PORT, if set (beyond the contract: a standalone
    worker has no HTTP server of its own). Read here, like the worker's other process knobs."""
    raw = os.environ.get("GATEWAY_WORKER_METRICS_PORT", "").strip()
    if not raw:
        return
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"GATEWAY_WORKER_METRICS_PORT must be a port number, not {raw!r}") from None
    host = os.environ.get("GATEWAY_WORKER_METRICS_HOST", "127.0.0.1")
    start_http_server(port, addr=host, registry=metrics.registry)
    log.info("hook worker metrics served", extra={"host": host, "port": port})


async def run_standalone(settings: Settings, redis_url: str) -> None:
    """`gateway worker`: deliver hooks until SIGTERM or SIGINT, then stop cleanly."""
    redis = client_for(redis_url)
    metrics = Metrics()
    serve_metrics(metrics)
    worker = HookWorker(redis, settings=settings.hooks, metrics=metrics, users=Users(redis))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
        await stop.wait()
        log.info("hook worker stopping")
        await worker.stop()
    finally:
        await redis.aclose()
