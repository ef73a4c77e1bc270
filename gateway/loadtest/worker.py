"""One client process: connects its slice of clients, answers heartbeats, counts receipts.

Talks to the runner over a multiprocessing pipe, one tuple per message:

    runner ──► worker   ("finish", expected: bytes, deadline: float, stall_s: float) | ("stop",)
    worker ──► runner   ("ready", {...}) · ("progress", unique, dropped) · ("result", {...})

Receipts are one byte per (client, event) in a flat bytearray — 20k clients × 1,000 events is
20 MB — so lost and duplicated messages are counted exactly, per client, without a set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway.loadtest.config import ClientConfig
from gateway.loadtest.wsclient import EioClient

# Receive-time buckets for the delivery-rate plot, in seconds.
BIN_S = 0.1
PROGRESS_S = 0.25
HEARTBEAT_TICK_S = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    client: ClientConfig
    first: int  # global index of this worker's first client
    count: int
    events: int
    epoch: float  # time.time() the run started: bins count from here
    # Added to the process's niceness, so the publisher and Redis sharing the client CPU
    # run as soon as they wake instead of queueing behind a busy client loop.
    nice: int = 10


class Worker:
    def __init__(self, pipe: Connection, spec: WorkerSpec) -> None:
        self.pipe = pipe
        self.spec = spec
        self.k = spec.events
        self.counts = bytearray(spec.count * spec.events)
        self.latencies = array("f")
        self.bins: list[int] = []
        self.unique = 0
        self.received = 0
        self.last_receive = 0.0
        self.clients: list[EioClient | None] = [None] * spec.count
        self.alive: set[int] = set()
        self.ready_clients: list[int] = []
        self.waiters: dict[int, asyncio.Future[str]] = {}
        self.connect_s: dict[int, float] = {}
        self.errors: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    # -- Receiver ---------------------------------------------------------------------------

    def record(self, index: int, seq: int, sent: float, now: float) -> None:
        self.received += 1
        self.last_receive = now
        if 0 <= seq < self.k:
            slot = index * self.k + seq
            seen = self.counts[slot]
            if seen < 255:
                self.counts[slot] = seen + 1
            if seen == 0:
                self.unique += 1
                self.latencies.append((now - sent) * 1000.0)
                bucket = int((now - self.spec.epoch) / BIN_S)
                bins = self.bins
                if bucket >= len(bins):
                    bins.extend([0] * (bucket + 1 - len(bins)))
                if bucket >= 0:
                    bins[bucket] += 1

    def ready(self, client: EioClient) -> None:
        waiter = self.waiters.pop(client.index, None)
        if waiter is not None and not waiter.done():
            waiter.set_result("")

    def failed(self, client: EioClient, reason: str) -> None:
        self.alive.discard(client.index)
        waiter = self.waiters.pop(client.index, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)
        else:
            self.drops[reason] += 1

    def closed(self, client: EioClient, reason: str) -> None:
        if client.index in self.alive:
            self.alive.discard(client.index)
            self.drops[reason] += 1

    # -- phases -----------------------------------------------------------------------------

    async def _connect_one(self, index: int, gate: asyncio.Semaphore) -> None:
        cfg = self.spec.client
        loop = asyncio.get_running_loop()
        async with gate:
            started = time.perf_counter()
            waiter: asyncio.Future[str] = loop.create_future()
            self.waiters[index] = waiter
            client = EioClient(
                index, self, host=cfg.target.host, port=cfg.target.port, path=cfg.target.path,
                eio=cfg.eio, cookie=cfg.cookie,
                subscribe_store=cfg.store if cfg.mode == "gateway" else None)
            self.clients[index] = client
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: client, cfg.target.host, cfg.target.port),
                    cfg.connect_timeout_s)
                reason = await asyncio.wait_for(waiter, cfg.connect_timeout_s)
            except (OSError, asyncio.TimeoutError) as error:
                reason = f"{type(error).__name__}: {error}".split(" [")[0][:120]
                client.close()
            self.waiters.pop(index, None)
            if reason:
                self.errors[reason] += 1
                self.clients[index] = None
            else:
                self.connect_s[index] = time.perf_counter() - started
                self.alive.add(index)
                self.ready_clients.append(index)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_TICK_S)
            now = time.monotonic()
            for client in self.clients:
                if client is not None:
                    client.heartbeat(now)

    async def _commands(self) -> None:
        # Polled, not loop.add_reader: a reader would make the pipe non-blocking, and a large
        # result then fails to send with EAGAIN.
        while True:
            await asyncio.sleep(0.05)
            while self.pipe.poll():
                try:
                    self.commands.put_nowait(self.pipe.recv())
                except EOFError:
                    self.commands.put_nowait(("stop",))
                    return

    async def main(self) -> None:
        reader = asyncio.create_task(self._commands())
        # Heartbeats start with the first connection: a connect phase longer than
        # pingInterval + pingTimeout must not get the early clients closed for silence.
        beats = asyncio.create_task(self._heartbeats())
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.spec.client.connect_concurrency)
        await asyncio.gather(*(self._connect_one(i, gate) for i in range(self.spec.count)))
        connect_total = time.perf_counter() - started
        self.pipe.send(("ready", {
            "ok": len(self.ready_clients), "failed": sum(self.errors.values()),
            "errors": dict(self.errors), "connect_total_s": connect_total,
            "connect_s": [self.connect_s[i] for i in self.ready_clients],
        }))
        self.cpu_start = _cpu_s()
        self.wall_start = time.monotonic()
        try:
            await self._run()
        finally:
            beats.cancel()
            reader.cancel()
            for client in self.clients:
                if client is not None:
                    client.close()
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        finish: tuple[Any, ...] | None = None
        while finish is None:
            with contextlib.suppress(asyncio.TimeoutError):
                command = await asyncio.wait_for(self.commands.get(), PROGRESS_S)
                if command[0] == "stop":
                    self.pipe.send(("result", self._result(None)))
                    return
                finish = command
            self.pipe.send(("progress", self.unique, sum(self.drops.values())))
        _, expected, deadline, stall_s = finish
        want = len(self.ready_clients) * sum(expected)
        while self.unique < want and time.time() < deadline:
            last = self.last_receive or time.time()
            if time.time() - last > stall_s:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                command = await asyncio.wait_for(self.commands.get(), PROGRESS_S)
                if command[0] == "stop":
                    break
            self.pipe.send(("progress", self.unique, sum(self.drops.values())))
        self.pipe.send(("progress", self.unique, sum(self.drops.values())))
        self.pipe.send(("result", self._result(expected)))

    def _result(self, expected: bytes | None) -> dict[str, Any]:
        k = self.k
        wanted = [seq for seq in range(k) if expected is None or expected[seq]]
        every = len(wanted) == k
        lost = duplicated = 0
        lost_per_event = [0] * k
        for index in self.ready_clients:
            row = self.counts[index * k:(index + 1) * k]
            if every and row.count(0) == 0 and row.count(1) == k:
                continue
            for seq in wanted:
                seen = row[seq]
                if seen == 0:
                    lost += 1
                    lost_per_event[seq] += 1
                elif seen > 1:
                    duplicated += seen - 1
        return {
            "clients": len(self.ready_clients), "unique": self.unique, "received": self.received,
            "lost": lost, "duplicated": duplicated, "lost_per_event": lost_per_event,
            "dropped": dict(self.drops), "latencies_ms": self.latencies.tobytes(),
            "bins": self.bins, "last_receive": self.last_receive,
            "cpu_s": _cpu_s() - self.cpu_start, "wall_s": time.monotonic() - self.wall_start,
        }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(pipe: Connection, spec: WorkerSpec) -> None:
    """Process entry point."""
    raise_fd_limit()
    if spec.nice:
        with contextlib.suppress(OSError):
            os.nice(spec.nice)
    try:
        import uvloop  # a faster loop when installed; the harness runs without it
        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(Worker(pipe, spec).main())
    except KeyboardInterrupt:
        pass
