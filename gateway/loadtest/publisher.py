"""Producing the K messages at rate R: REST entity writes, Redis commits, or a peer's trigger.

Every message's data carries `lt: "<seq>:<unix time>"`, stamped just before it is sent, so the
measured latency is publish call → client receipt and includes the whole server pipeline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Send = Callable[[int], Awaitable[bool]]


def marker(seq: int) -> str:
    return f"{seq}:{time.time():.6f}"


@dataclass(slots=True)
class PublishResult:
    ok: bytearray  # one byte per event: 1 if the publish call succeeded
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    call_ms: list[float] = field(default_factory=list)


def login(base: str, login_name: str, password: str) -> str:
    """The `sid` cookie for that user (POST /api/v1/auth)."""
    response = httpx.post(f"{base}/api/v1/auth", json={"login": login_name, "password": password},
                          timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"login as {login_name!r} failed: {response.status_code} "
                           f"{response.text[:200]}")
    sid = response.cookies.get("sid")
    if not sid:
        raise RuntimeError("login answered 200 without a sid cookie")
    return sid


class Publisher:
    """Calls `send(seq)` for seq in 0..K-1, paced at `rate` per second (0: unpaced)."""

    def __init__(self, *, events: int, rate: float, concurrency: int,
                 on_sent: Callable[[int], None] | None = None) -> None:
        self.events = events
        self.rate = rate
        self.concurrency = max(1, concurrency)
        self.on_sent = on_sent

    async def run(self, send: Send) -> PublishResult:
        result = PublishResult(ok=bytearray(self.events))
        gate = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        result.started = time.time()
        start = loop.time()

        async def one(seq: int) -> None:
            try:
                began = time.perf_counter()
                if await send(seq):
                    result.ok[seq] = 1
                else:
                    result.errors["refused"] = result.errors.get("refused", 0) + 1
                result.call_ms.append((time.perf_counter() - began) * 1000)
            except Exception as error:  # counted and reported, never fatal to the run
                name = type(error).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
            finally:
                gate.release()
                if self.on_sent:
                    self.on_sent(seq)

        tasks = []
        for seq in range(self.events):
            if self.rate > 0:
                delay = start + seq / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
        result.finished = time.time()
        return result


def payload(seq: int, pad: int) -> dict[str, Any]:
    return {"lt": marker(seq), "pad": "x" * pad}


class RestSender:
    """POST /api/v1/{store}: one entity created per event (the full write pipeline)."""

    def __init__(self, base: str, cookie: str, store: str, pad: int) -> None:
        self.http = httpx.AsyncClient(base_url=base, cookies={"sid": cookie}, timeout=30,
                                      limits=httpx.Limits(max_connections=64))
        self.store = store
        self.pad = pad

    async def __call__(self, seq: int) -> bool:
        response = await self.http.post(f"/api/v1/{self.store}", json=payload(seq, self.pad))
        return response.status_code == 201

    async def close(self) -> None:
        await self.http.aclose()


class RedisSender:
    """The gateway's own commit script in `publish` mode: Redis pub/sub and history, no HTTP."""

    def __init__(self, redis_url: str, store: str, pad: int) -> None:
        from gateway.events.pipeline import EventPipeline
        from gateway.metrics import Metrics
        from gateway.store.redis import client_for

        self.redis = client_for(redis_url)
        self.pipeline = EventPipeline(self.redis, history_size=1000, metrics=Metrics())
        self.store = store
        self.pad = pad

    async def __call__(self, seq: int) -> bool:
        from gateway.events.pipeline import build_event

        event = build_event("entity.created", self.store, None, payload(seq, self.pad))
        await self.pipeline.commit("publish", event, store=self.store)
        return True

    async def close(self) -> None:
        await self.redis.aclose()


class TriggerSender:
    """A reference peer (scripts/peers): POST /trigger with the marker; it broadcasts."""

    def __init__(self, base: str, pad: int) -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=30,
                                      limits=httpx.Limits(max_connections=64))
        self.pad = pad

    async def __call__(self, seq: int) -> bool:
        response = await self.http.post("/trigger", json=payload(seq, self.pad))
        return response.status_code < 300

    async def close(self) -> None:
        await self.http.aclose()
