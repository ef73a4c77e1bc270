"""Contract §4: POST /api/v1/events publishes an event produced elsewhere (admin or publisher)."""

from __future__ import annotations

import time

import pytest

from gateway import codec
from gateway.events.ids import from_stream_id
from gateway.events.pipeline import decode_published
from tests.support.api import unique
from tests.support.asserts import assert_envelope

@pytest.fixture(scope="module")
def publisher(client):
    return client.create_user(roles=["publisher"], groups=["pub-team"])


@pytest.fixture(scope="module")
def plain(client):
    return client.create_user()


@pytest.fixture()
def store():
    return unique("pub")


def history(redis_client, store):
    return [{"id": from_stream_id(sid), **codec.unpack(fields[b"e"])}
            for sid, fields in redis_client.xrange(f"gw:history:{store}")]


def publish(client, auth, body):
    return client.http.post("/api/v1/events", json=body, headers=auth)


@pytest.mark.parametrize("who", ["admin", "publisher"])
def test_admin_and_publisher_publish_with_202_and_an_id(client, publisher, store, redis_client,
                                                        who):
    auth = client.as_admin() if who == "admin" else publisher["auth"]
    entity_id = "0123456789abcdef01234567"
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"gw:events:{store}")
    pubsub.get_message(timeout=1)
    try:
        before = int(time.time() * 1000)
        response = publish(client, auth, {"type": "order.shipped", "store": store,
                                          "entityId": entity_id, "data": {"carrier": "ups",
                                                                          "owner": "x"}})
        assert response.status_code == 202, response.text
        assert set(response.json()) == {"id"}
        live = None
        deadline = time.monotonic() + 5
        while live is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
            if message and decode_published(message["data"])["store"] == store:
                live = decode_published(message["data"])
    finally:
        pubsub.close()
    [stored] = history(redis_client, store)
    assert stored == live
    assert stored["id"] == response.json()["id"]
    assert stored["type"] == "order.shipped" and stored["store"] == store
    assert stored["entityId"] == entity_id
    assert stored["data"] == {"carrier": "ups", "owner": "x"}
    assert "changes" not in stored
    assert before <= stored["timestamp"] <= int(time.time() * 1000)


def test_entity_id_is_optional(client, publisher, store, redis_client):
    response = publish(client, publisher["auth"], {"type": "ping", "store": store, "data": {}})
    assert response.status_code == 202
    assert history(redis_client, store)[0]["entityId"] is None


def test_published_ids_sort_with_the_stores_entity_events(client, publisher, store,
                                                          redis_client):
    made = []
    for n in range(12):
        if n % 2:
            response = publish(client, publisher["auth"],
                               {"type": "tick", "store": store, "data": {"n": n}})
            assert response.status_code == 202
            made.append(response.json()["id"])
        else:
            response = client.http.post(f"/api/v1/{store}", json={"n": n},
                                        headers=publisher["auth"])
            assert response.status_code == 201
    ids = [e["id"] for e in history(redis_client, store)]
    assert len(ids) == 12 and ids == sorted(ids)
    assert [e["data"]["n"] for e in history(redis_client, store)] == list(range(12))
    assert made == [ids[n] for n in range(1, 12, 2)]


def test_a_plain_user_may_not_publish(client, plain, store, redis_client):
    body = {"type": "x", "store": store, "data": {}}
    assert_envelope(publish(client, plain["auth"], body), 403)
    assert_envelope(client.http.post("/api/v1/events", json=body), 401)
    assert history(redis_client, store) == []


def test_a_readonly_publisher_and_a_read_token_may_not_publish(client, publisher, store,
                                                               redis_client):
    body = {"type": "x", "store": store, "data": {}}
    readonly = client.create_user(roles=["publisher", "readonly"])
    assert_envelope(publish(client, readonly["auth"], body), 403)
    key = client.http.post("/api/v1/apikeys", json={"scope": "read"}, headers=publisher["auth"])
    token = client.http.get("/auth/token", headers={"Authorization": key.json()["key"]})
    bearer = {"Authorization": "Bearer " + token.json()["accessToken"]}
    assert_envelope(publish(client, bearer, body), 403)
    assert history(redis_client, store) == []


S = unique("never")  # the store the bad bodies name; nothing may ever land in it
BAD = {
    "no type": {"store": S, "data": {}},
    "type not a string": {"type": 5, "store": S, "data": {}},
    "empty type": {"type": "", "store": S, "data": {}},
    "type with spaces": {"type": "a b", "store": S, "data": {}},
    "no store": {"type": "x", "data": {}},
    "store not a string": {"type": "x", "store": ["s"], "data": {}},
    "store starts with a digit": {"type": "x", "store": "1s", "data": {}},
    "store too long": {"type": "x", "store": "s" * 65, "data": {}},
    "reserved store": {"type": "x", "store": "users", "data": {}},
    "bad entityId": {"type": "x", "store": S, "entityId": "nope", "data": {}},
    "entityId a number": {"type": "x", "store": S, "entityId": 5, "data": {}},
    "no data": {"type": "x", "store": S},
    "data an array": {"type": "x", "store": S, "data": [1]},
    "data a string": {"type": "x", "store": S, "data": "x"},
    "data null": {"type": "x", "store": S, "data": None},
    "unknown field": {"type": "x", "store": S, "data": {}, "extra": 1},
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_bodies_are_400_and_publish_nothing(client, publisher, redis_client, body):
    before = redis_client.xlen(f"gw:history:{S}")
    assert_envelope(publish(client, publisher["auth"], body), 400)
    assert redis_client.xlen(f"gw:history:{S}") == before == 0


def _raw(data: bytes) -> bytes:
    return b'{"type": "x", "store": "' + S.encode() + b'", "data": ' + data + b"}"


@pytest.mark.parametrize("raw,status", [(b"{", 400), (b"[]", 400), (b'"x"', 400), (b"", 400),
                                        (_raw(b'{"a": NaN}'), 400), (_raw(b'{"a": 1e999}'), 400),
                                        (_raw(b'{"a": ' + b"9" * 30 + b"}"), 400),
                                        (_raw(b'{"b": "' + b"x" * (1 << 20) + b'"}'), 413)])
def test_unreadable_bodies_publish_nothing(client, publisher, redis_client, raw, status):
    response = client.http.post("/api/v1/events", content=raw,
                                headers={**publisher["auth"], "Content-Type": "application/json"})
    assert_envelope(response, status)
    assert redis_client.xlen(f"gw:history:{S}") == 0
