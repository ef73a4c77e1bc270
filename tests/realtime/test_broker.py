"""RedisBroker on a real Redis: watch returns once a store's events flow, events and control
messages reach the handler, a released store is unsubscribed after its idle time, and a
dropped pub/sub connection is reported as a gap before the next message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from gateway import codec
from gateway.realtime import broker as broker_module
from gateway.realtime.broker import RedisBroker
from gateway.store import control, keys
from tests.support.api import unique


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.controls: list[control.ControlMessage] = []
        self.gaps = 0
        self.unwatched: list[str] = []

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def on_control(self, message: control.ControlMessage) -> None:
        self.controls.append(message)

    async def on_gap(self) -> None:
        self.gaps += 1

    def on_unwatched(self, store: str) -> None:
        self.unwatched.append(store)


def published(event_id: str, store: str) -> bytes:
    return codec.pack(event_id) + codec.pack({"type": "entity.created", "store": store})


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture()
async def running(redis_url: str) -> Any:
    client = aioredis.Redis.from_url(redis_url)
    broker, recorder = RedisBroker(client), Recorder()
    await broker.start(recorder)
    await asyncio.wait_for(broker.connected.wait(), 5)
    yield broker, recorder, client
    await broker.stop()
    await client.aclose()


async def test_watch_returns_once_the_store_flows_and_only_watched_stores_arrive(running) -> None:
    broker, recorder, client = running
    watched, other = unique("bw"), unique("bo")
    assert await broker.watch(watched) is True  # new: its events start now
    assert await broker.watch(watched) is False  # already flowing
    await client.publish(keys.events_channel(other), published("0000000000001-000000", other))
    await client.publish(keys.events_channel(watched), published("0000000000002-000000", watched))
    await client.publish(keys.CONTROL_CHANNEL, control.encode(control.ApiKeyDeleted("k1")))
    await until(lambda: recorder.events and recorder.controls)
    assert [e["store"] for e in recorder.events] == [watched]
    assert recorder.controls == [control.ApiKeyDeleted("k1")]


async def test_a_released_store_is_unsubscribed_after_its_idle_time(running, monkeypatch,
                                                                     redis_url: str) -> None:
    broker, recorder, _ = running
    monkeypatch.setattr(broker_module, "IDLE_STORE_S", 0.2)
    store = unique("bi")
    await broker.watch(store)
    numsub = sync_redis.Redis.from_url(redis_url).pubsub_numsub
    assert numsub(keys.events_channel(store))[0][1] == 1
    broker.release(store)
    await until(lambda: recorder.unwatched == [store])
    await until(lambda: numsub(keys.events_channel(store))[0][1] == 0)
    assert await broker.watch(store) is True  # watched again: subscribed again


async def test_a_dropped_connection_is_a_gap_reported_before_the_next_message(
        running, redis_url: str) -> None:
    broker, recorder, client = running
    store = unique("bg")
    await broker.watch(store)
    sync_redis.Redis.from_url(redis_url).client_kill_filter(_type="pubsub")
    await until(lambda: recorder.gaps >= 1)
    await client.publish(keys.events_channel(store), published("0000000000003-000000", store))
    await until(lambda: recorder.events)  # still subscribed after the gap
