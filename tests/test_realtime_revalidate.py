"""Pub/sub can lose a control message (a process cut off from Redis when it was sent): after
its listener reconnects, every process re-checks the credentials and users of its connections
in Redis and ends what ended meanwhile."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import redis

from tests.support.api import FAST_LIMITS, Api, basic
from tests.support.eio import closed_within, cookie, handshake, login, open_ws


def _silently(redis_client: redis.Redis, change: Any) -> None:
    """Change Redis behind the gateway's back (no control message), then cut its pub/sub
    connection so the listener reconnects."""
    change()
    redis_client.client_kill_filter(_type="pubsub")


async def test_a_session_deleted_unheard_ends_its_connection_after_the_reconnect(
        start_gateway, redis_client: redis.Redis) -> None:
    gateway = start_gateway(env=FAST_LIMITS)
    api = Api(gateway.url)
    user = api.create_user()
    sid = login(api, user)
    ws = await open_ws(gateway.url, eio=3, headers=cookie(sid))
    await handshake(ws, 3)
    digest = hashlib.sha256(sid.encode()).hexdigest()
    assert redis_client.exists(f"gw:session:{digest}")
    _silently(redis_client, lambda: redis_client.delete(f"gw:session:{digest}"))
    frames = await closed_within(ws, 5)
    assert frames[-2:] == ["41", "1"], frames
    api.close()


async def test_a_password_changed_unheard_ends_basic_connections_but_not_others(
        start_gateway, redis_client: redis.Redis) -> None:
    gateway = start_gateway(env=FAST_LIMITS)
    api = Api(gateway.url)
    user = api.create_user()
    by_basic = await open_ws(gateway.url, eio=3, headers=user["auth"])
    await handshake(by_basic, 3)
    other = api.create_user()
    bystander = await open_ws(gateway.url, eio=3, headers=basic(other["login"], other["password"]))
    await handshake(bystander, 3)

    def new_hash() -> None:
        record = msgpack.unpackb(redis_client.hget("gw:users", user["_id"]), raw=False)
        record["password"] = record["password"] + "-changed-elsewhere"
        redis_client.hset("gw:users", user["_id"], msgpack.packb(record, use_bin_type=True))

    _silently(redis_client, new_hash)
    frames = await closed_within(by_basic, 5)
    assert frames[-2:] == ["41", "1"], frames
    await bystander.send("2")  # still served after the reconnect
    assert await bystander.recv() == "3"
    await bystander.close()
    api.close()


async def test_events_published_while_pubsub_was_reconnecting_are_caught_up(
        start_gateway, redis_client: redis.Redis) -> None:
    """redis-py re-subscribes by itself after a dropped connection; what was published in
    between must still reach subscribers (from the history), once and in order."""
    import asyncio
    import threading

    import httpx

    from tests.support.api import unique
    from tests.support.eio import Client

    gateway = start_gateway(env=FAST_LIMITS)
    api = Api(gateway.url)
    user = api.create_user()
    store = unique("gap")
    client = await Client.connect(gateway.url, headers=cookie(login(api, user)))
    assert (await client.subscribe(store=store))["success"]
    written: list[str] = []

    def write(count: int) -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            for _ in range(count):
                response = http.post(f"/api/v1/{store}", json={"n": 1}, headers=user["auth"])
                written.append(response.json()["_id"])

    writers = [threading.Thread(target=write, args=(30,)) for _ in range(2)]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        redis_client.client_kill_filter(_type="pubsub")
        await asyncio.sleep(0.05)
    for thread in writers:
        thread.join()
    marker = api.http.post(f"/api/v1/{store}", json={"end": 1}, headers=user["auth"]).json()["_id"]
    events = await client.events_until(marker, timeout=10)
    ids = [event["id"] for _, event in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert {event["entityId"] for _, event in events} == {*written, marker}
    await client.close()
    api.close()
