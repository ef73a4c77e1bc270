"""Contract §4 events: each successful write makes exactly one event of the contract's shape,
a refused write makes none, ids sort as strings, concurrent writes lose nothing, and the history
stream keeps GATEWAY_HISTORY_SIZE events.

Events are read where the gateway puts them: the `gw:history:<store>` stream and the
`gw:events:<store>` pub/sub channel (decoded with `decode_published`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import redis.asyncio as aioredis

from gateway import codec
from gateway.events.ids import LUA_FORMAT, from_stream_id, to_stream_id
from gateway.events.pipeline import EventPipeline, build_event, decode_published
from gateway.metrics import Metrics
from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.asserts import assert_envelope

@pytest.fixture(scope="module")
def alice(client):
    return client.create_user(groups=["ev-team"])


@pytest.fixture(scope="module")
def bob(client):
    return client.create_user()


@pytest.fixture()
def store():
    return unique("ev")


def history(redis_client, store):
    """The store's retained events, oldest first, with their ids as the gateway spells them."""
    return [{"id": from_stream_id(sid), **codec.unpack(fields[b"e"])}
            for sid, fields in redis_client.xrange(f"gw:history:{store}")]


class Published:
    """Everything published on the store's channel (gw:events:<store>) while the block runs."""

    def __init__(self, redis_client, store):
        self.store = store
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.events = []

    def __enter__(self):
        self.pubsub.subscribe(f"gw:events:{self.store}")
        self.pubsub.get_message(timeout=1)  # the subscribe confirmation
        return self

    def drain(self, settle=0.3):
        """Collect until nothing arrives for `settle` seconds."""
        while True:
            message = self.pubsub.get_message(timeout=settle)
            if message is None:
                return self.events
            event = decode_published(message["data"])
            if event["store"] == self.store:
                self.events.append(event)

    def __exit__(self, *exc):
        self.pubsub.close()


def create(client, user, store, body=None):
    response = client.http.post(f"/api/v1/{store}", json=body or {}, headers=user["auth"])
    assert response.status_code == 201, response.text
    return response.json()


def assert_event_shape(event):
    assert set(event) <= {"id", "type", "store", "entityId", "data", "changes", "timestamp"}
    assert isinstance(event["id"], str) and to_stream_id(event["id"]) is not None
    assert isinstance(event["timestamp"], int)
    assert abs(event["timestamp"] - time.time() * 1000) < 60_000
    assert ("changes" in event) == (event["type"] == "entity.updated")


# --- one event per write, of the contract's shape ------------------------------------------

def test_each_write_makes_exactly_one_event_of_the_contracts_shape(client, alice, store,
                                                                   redis_client):
    with Published(redis_client, store) as published:
        entity = create(client, alice, store, {"a": 1, "b": 2})
        path = f"/api/v1/{store}/{entity['_id']}"
        patched = client.http.patch(path, json={"a": 5, "b": None, "c": [1]},
                                    headers=alice["auth"]).json()
        put = client.http.put(path, json={"c": [1], "d": "new"}, headers=alice["auth"]).json()
        assert client.http.delete(path, headers=alice["auth"]).status_code == 200
        live = published.drain()

    stored = history(redis_client, store)
    assert live == stored  # the same events, the same ids, in the same order
    assert [e["type"] for e in stored] == ["entity.created", "entity.updated",
                                           "entity.updated", "entity.deleted"]
    for event in stored:
        assert_event_shape(event)
        assert event["store"] == store and event["entityId"] == entity["_id"]
    created, update1, update2, deleted = stored
    assert created["data"] == entity
    assert update1["data"] == patched
    assert update1["changes"] == {"a": 5, "b": None, "c": [1]}
    assert update2["data"] == put
    assert update2["changes"] == {"a": None, "d": "new"}  # c was already [1]
    assert deleted["data"] == put  # as it was
    ids = [e["id"] for e in stored]
    assert ids == sorted(ids) and len(set(ids)) == 4
    stamps = [e["timestamp"] for e in stored]
    assert stamps == sorted(stamps)


def test_an_admin_write_to_another_users_entity_is_one_event(client, alice, store, redis_client):
    entity = create(client, alice, store)
    response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", json={"x": 1},
                                 headers=client.as_admin())
    assert response.status_code == 200
    assert [e["type"] for e in history(redis_client, store)] == ["entity.created",
                                                                 "entity.updated"]


def test_the_pubsub_message_is_the_id_then_the_payload(client, alice, store, redis_client):
    """msgpack(event id) + msgpack(event without id), as pipeline.py documents."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"gw:events:{store}")
    pubsub.get_message(timeout=1)
    try:
        entity = create(client, alice, store)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
            if message and decode_published(message["data"])["store"] == store:
                break
        raw = message["data"]
    finally:
        pubsub.close()
    event_id = history(redis_client, store)[0]["id"]
    head = codec.pack(event_id)
    assert raw.startswith(head)
    payload = codec.unpack(raw[len(head):])
    assert "id" not in payload and payload["data"] == entity


# --- refused writes make no event ----------------------------------------------------------

def test_refused_writes_make_no_event(client, alice, bob, store, redis_client):
    entity = create(client, alice, store, {"a": 1})
    hidden = create(client, alice, store, {"secret": True})
    readable = create(client, alice, store, {"branch": [bob["_id"]]})
    base = f"/api/v1/{store}"
    json_headers = {**alice["auth"], "Content-Type": "application/json"}
    attempts = [
        # 400
        ("POST", base, {"content": b"{bad", "headers": json_headers}, 400),
        ("POST", base, {"content": b"[1]", "headers": json_headers}, 400),
        ("POST", base, {"json": {"_id": "0" * 24}, "headers": alice["auth"]}, 400),
        ("POST", base, {"json": {"owner": "x"}, "headers": alice["auth"]}, 400),
        ("POST", base, {"json": {"access": "x"}, "headers": alice["auth"]}, 400),
        ("PATCH", f"{base}/{entity['_id']}", {"json": {"access": []}, "headers": alice["auth"]},
         400),
        ("PATCH", f"{base}/{entity['_id']}", {"content": b'{"a": NaN}', "headers": json_headers},
         400),
        ("PUT", f"{base}/{entity['_id']}", {"json": {"owner": "x"}, "headers": alice["auth"]},
         400),
        ("DELETE", f"{base}/nope", {"headers": alice["auth"]}, 400),
        # 403
        ("PATCH", f"{base}/{readable['_id']}", {"json": {"a": 2}, "headers": bob["auth"]}, 403),
        ("PUT", f"{base}/{readable['_id']}", {"json": {"a": 2}, "headers": bob["auth"]}, 403),
        ("DELETE", f"{base}/{readable['_id']}", {"headers": bob["auth"]}, 403),
        # 404
        ("PATCH", f"{base}/{hidden['_id']}", {"json": {"a": 2}, "headers": bob["auth"]}, 404),
        ("PUT", f"{base}/{hidden['_id']}", {"json": {"a": 2}, "headers": bob["auth"]}, 404),
        ("DELETE", f"{base}/{hidden['_id']}", {"headers": bob["auth"]}, 404),
        ("DELETE", f"{base}/{'0' * 24}", {"headers": alice["auth"]}, 404),
        # 413
        ("POST", base, {"json": {"x": "y" * (1 << 20)}, "headers": alice["auth"]}, 413),
        ("PATCH", f"{base}/{entity['_id']}", {"json": {"x": "y" * (1 << 20)},
                                              "headers": alice["auth"]}, 413),
    ]
    before = history(redis_client, store)
    assert len(before) == 3
    with Published(redis_client, store) as published:
        for method, path, kwargs, status in attempts:
            assert_envelope(client.http.request(method, path, **kwargs), status)
        assert published.drain() == []
    assert history(redis_client, store) == before


# --- ids sort as strings -------------------------------------------------------------------

def test_event_ids_zero_pad_so_string_order_is_stream_order():
    assert from_stream_id(b"1700000000000-9") == "1700000000000-000009"
    assert from_stream_id("1700000000000-10") == "1700000000000-000010"
    assert from_stream_id(b"1700000000000-9") < from_stream_id(b"1700000000000-10")
    assert from_stream_id("999999999999-5") < from_stream_id("1000000000000-0")
    assert to_stream_id("1700000000000-000010") == "1700000000000-10"
    assert to_stream_id("1700000000000-10") is None
    assert to_stream_id("garbage") is None
    sequence = [f"1700000000000-{n}" for n in range(25)] + ["1700000000001-0"]
    as_ids = [from_stream_id(s) for s in sequence]
    assert sorted(as_ids) == as_ids


def test_the_lua_id_format_matches_the_python_one(redis_client):
    script = LUA_FORMAT + "return event_id(ARGV[1])"
    for stream_id in ["0-0", "1700000000000-9", "1700000000000-10", "1700000000000-123456",
                      "999999999999-99"]:
        assert redis_client.eval(script, 0, stream_id).decode() == from_stream_id(stream_id)


def test_more_than_ten_events_in_one_millisecond_keep_string_order(redis_url, redis_client):
    """The real commit script, fired concurrently: many events share a millisecond, so the
    stream's sequence passes 9 → 10, where unpadded ids would sort wrongly."""
    store = unique("burst")

    async def burst():
        redis = aioredis.Redis.from_url(redis_url, max_connections=400)
        pipeline = EventPipeline(redis, history_size=1000, metrics=Metrics())
        try:
            return await asyncio.gather(*[
                pipeline.commit("publish", build_event("burst.test", store, None, {"n": n}),
                                store=store) for n in range(300)])
        finally:
            await redis.aclose()

    committed = asyncio.run(burst())
    stream_ids = [sid.decode() for sid, _ in redis_client.xrange(f"gw:history:{store}")]
    assert len(stream_ids) == 300
    assert max(int(s.split("-")[1]) for s in stream_ids) >= 10, "no millisecond held 11 events"
    ids = [from_stream_id(s) for s in stream_ids]
    assert ids == sorted(ids)
    assert sorted(c.event_id for c in committed) == ids


def test_fast_writes_to_one_store_have_ids_in_event_order(client, alice, store, redis_client):
    entity = create(client, alice, store)
    for n in range(15):
        response = client.http.patch(f"/api/v1/{store}/{entity['_id']}", json={"n": n},
                                     headers=alice["auth"])
        assert response.status_code == 200
    events = history(redis_client, store)
    assert len(events) == 16
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert [e["changes"]["n"] for e in events[1:]] == list(range(15))


# --- concurrency ---------------------------------------------------------------------------

@pytest.mark.parametrize("writers", [20, 50])
def test_concurrent_patches_of_different_fields_all_survive(client, alice, store, redis_client,
                                                            writers):
    entity = create(client, alice, store)
    path = f"{client.base_url}/api/v1/{store}/{entity['_id']}"
    barrier = threading.Barrier(writers)
    statuses = [None] * writers

    def patch(n):
        with httpx.Client(timeout=30) as http:
            http.get(f"{client.base_url}/healthz")  # connect before the race starts
            barrier.wait()
            statuses[n] = http.patch(path, json={f"f{n}": n}, headers=alice["auth"]).status_code

    threads = [threading.Thread(target=patch, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * writers
    final = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"]).json()
    assert {k: v for k, v in final.items() if k.startswith("f")} == {
        f"f{n}": n for n in range(writers)}
    updates = [e for e in history(redis_client, store) if e["type"] == "entity.updated"]
    assert len(updates) == writers
    assert sorted(json.dumps(e["changes"]) for e in updates) == sorted(
        json.dumps({f"f{n}": n}) for n in range(writers))
    assert updates[-1]["data"] == final


@pytest.fixture(scope="module")
def small(start_gateway):
    """A second gateway on the same Redis, keeping only 5 events per store."""
    api = Api(start_gateway(env={**FAST_LIMITS, "GATEWAY_HISTORY_SIZE": "5"}).url)
    yield api
    api.close()


def test_concurrent_patches_through_two_gateways_all_survive(client, small, alice, store,
                                                             redis_client):
    """Across processes only the optimistic check in the commit script guards the entity."""
    entity = create(client, alice, store)
    writers = 40
    barrier = threading.Barrier(writers)
    statuses = [None] * writers

    def patch(n):
        base = (client if n % 2 else small).base_url
        with httpx.Client(timeout=30) as http:
            http.get(f"{base}/healthz")
            barrier.wait()
            statuses[n] = http.patch(f"{base}/api/v1/{store}/{entity['_id']}",
                                     json={f"f{n}": n}, headers=alice["auth"]).status_code

    # Events are counted on pub/sub: the small gateway trims this store's history to 5.
    with Published(redis_client, store) as published:
        threads = [threading.Thread(target=patch, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = published.drain()
    assert statuses == [200] * writers
    final = client.http.get(f"/api/v1/{store}/{entity['_id']}", headers=alice["auth"]).json()
    assert {k: v for k, v in final.items() if k.startswith("f")} == {
        f"f{n}": n for n in range(writers)}
    assert len(events) == writers
    assert sorted(json.dumps(e["changes"]) for e in events) == sorted(
        json.dumps({f"f{n}": n}) for n in range(writers))
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


# --- the history cap -----------------------------------------------------------------------

def test_history_keeps_gateway_history_size_events(small, redis_client):
    user = small.create_user()
    store = unique("capped")
    entity = create(small, user, store, {"n": -1})
    for n in range(11):
        small.http.patch(f"/api/v1/{store}/{entity['_id']}", json={"n": n},
                         headers=user["auth"]).raise_for_status()
    assert redis_client.xlen(f"gw:history:{store}") == 5
    kept = history(redis_client, store)
    assert [e["changes"]["n"] for e in kept] == [6, 7, 8, 9, 10]  # the newest five
