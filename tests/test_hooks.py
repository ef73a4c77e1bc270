"""REST hooks on the shared gateway (contract §6): the API, signed delivery, filters,
permissions, unsubscribe and 410."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.api import Api, unique
from tests.support.asserts import assert_envelope
from tests.support.sink import Sink, signature_valid


@pytest.fixture()
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture()
def make_hook(api: Api) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create hooks through the API; every one left is deleted after the test."""
    made: list[tuple[str, dict[str, str]]] = []

    def make(target_url: str, event: str = "*", store: str | None = None,
             auth: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"target_url": target_url, "event": event}
        if store is not None:
            body["store"] = store
        headers = auth or api.as_admin()
        response = api.http.post("/api/v1/hooks", json=body, headers=headers)
        assert response.status_code == 201, response.text
        made.append((response.json()["id"], headers))
        return response.json()

    yield make
    for hook_id, headers in made:
        api.http.delete(f"/api/v1/hooks/{hook_id}", headers=headers)


def create_entity(api: Api, store: str, body: dict[str, Any] | None = None,
                  auth: dict[str, str] | None = None) -> dict[str, Any]:
    response = api.http.post(f"/api/v1/{store}", json=body or {"n": 1},
                             headers=auth or api.as_admin())
    assert response.status_code == 201, response.text
    return response.json()


def test_create_shows_the_secret_once_and_lists_are_owner_scoped(api: Api, sink: Sink,
                                                                 make_hook) -> None:
    alice, bob = api.create_user(), api.create_user()
    hook = make_hook(sink.url + "/x", event="entity.created", store="orders", auth=alice["auth"])
    assert set(hook) >= {"id", "target_url", "event", "store", "secret", "createdAt"}
    assert hook["secret"].startswith("whsec_") and hook["store"] == "orders"
    assert hook["target_url"] == sink.url + "/x" and hook["event"] == "entity.created"

    listed = api.http.get("/api/v1/hooks", headers=alice["auth"]).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    one = api.http.get(f"/api/v1/hooks/{hook['id']}", headers=alice["auth"])
    assert one.status_code == 200 and "secret" not in one.json()
    assert api.http.get("/api/v1/hooks", headers=bob["auth"]).json() == []
    assert_envelope(api.http.get(f"/api/v1/hooks/{hook['id']}", headers=bob["auth"]), 404)
    assert_envelope(api.http.delete(f"/api/v1/hooks/{hook['id']}", headers=bob["auth"]), 404)
    assert hook["id"] in [h["id"] for h in
                          api.http.get("/api/v1/hooks", headers=api.as_admin()).json()]


@pytest.mark.parametrize("body", [
    {"target_url": "http://127.0.0.1:9/", "event": "bogus event"},
    {"target_url": "http://127.0.0.1:9/", "event": "entity.**"},
    {"target_url": "http://127.0.0.1:9/", "event": 3},
    {"target_url": "http://127.0.0.1:9/"},
    {"target_url": "http://127.0.0.1:9/", "event": "*", "store": "auth"},
    {"target_url": "http://127.0.0.1:9/", "event": "*", "store": "no spaces"},
    {"target_url": "http://127.0.0.1:9/", "event": "*", "store": 5},
    {"target_url": "http://127.0.0.1:9/", "event": "*", "color": "red"},
    {"target_url": 42, "event": "*"},
    {"event": "*"},
    {"target_url": "ftp://127.0.0.1/", "event": "*"},
])
def test_invalid_subscriptions_are_400(api: Api, body: dict[str, Any]) -> None:
    assert_envelope(api.http.post("/api/v1/hooks", json=body, headers=api.as_admin()), 400)


def test_unknown_ids_are_404(api: Api, sink: Sink, make_hook) -> None:
    admin = api.as_admin()
    for path in ("/api/v1/hooks/000000000000000000000000", "/api/v1/hooks/nope",
                 "/api/v1/hooks/000000000000000000000000/deliveries"):
        assert_envelope(api.http.get(path, headers=admin), 404)
    assert_envelope(api.http.delete("/api/v1/hooks/000000000000000000000000", headers=admin), 404)
    hook = make_hook(sink.url + "/x")
    assert_envelope(api.http.post(f"/api/v1/hooks/{hook['id']}/deliveries/nope/retry",
                                  headers=admin), 404)


def test_delivery_is_signed_with_the_event_as_body(api: Api, sink: Sink, make_hook) -> None:
    store = unique("signed")
    hook = make_hook(sink.url + "/signed", event="entity.created", store=store)
    entity = create_entity(api, store, {"total": 12})
    (received,) = sink.wait_for(1, "/signed")
    event = received.json()
    assert event["type"] == "entity.created" and event["store"] == store
    assert event["entityId"] == entity["_id"] and event["data"] == entity
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == event["id"]
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 30
    assert received.headers["webhook-signature"].startswith("v1,")
    assert signature_valid(hook["secret"], received)
    assert not signature_valid("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", received)

    def logged() -> list[dict[str, Any]]:
        response = api.http.get(f"/api/v1/hooks/{hook['id']}/deliveries", headers=api.as_admin())
        return response.json()

    deadline = time.monotonic() + 5
    while logged()[0]["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    (delivery,) = logged()
    assert delivery["eventId"] == event["id"] and delivery["status"] == "succeeded"
    assert delivery["nextAttemptAt"] is None
    (attempt,) = delivery["attempts"]
    assert attempt["statusCode"] == 200 and attempt["error"] is None
    assert isinstance(attempt["at"], int) and isinstance(attempt["durationMs"], int)


def test_event_and_store_filters_and_wildcards(api: Api, sink: Sink, make_hook) -> None:
    s1, s2 = unique("fa"), unique("fb")
    make_hook(sink.url + "/created-s1", event="entity.created", store=s1)
    make_hook(sink.url + "/entity-any", event="entity.*")
    make_hook(sink.url + "/all-s2", event="*", store=s2)
    make_hook(sink.url + "/deleted-s1", event="entity.deleted", store=s1)
    admin = api.as_admin()
    one = create_entity(api, s1)
    assert api.http.patch(f"/api/v1/{s1}/{one['_id']}", json={"n": 2}, headers=admin).is_success
    create_entity(api, s2)
    assert api.http.delete(f"/api/v1/{s1}/{one['_id']}", headers=admin).is_success
    published = api.http.post("/api/v1/events", headers=admin,
                              json={"type": "order.shipped", "store": s2, "data": {"x": 1}})
    assert published.status_code == 202

    types = lambda path: sorted(r.json()["type"] for r in sink.received(path))  # noqa: E731
    sink.wait_for(4, "/entity-any")
    sink.wait_for(2, "/all-s2")
    sink.wait_for(1, "/created-s1")
    sink.wait_for(1, "/deleted-s1")
    time.sleep(0.3)
    assert types("/created-s1") == ["entity.created"]
    assert types("/deleted-s1") == ["entity.deleted"]
    assert types("/all-s2") == ["entity.created", "order.shipped"]
    assert types("/entity-any") == ["entity.created", "entity.created", "entity.deleted",
                                    "entity.updated"]


def test_a_hook_gets_only_events_its_owner_may_read(api: Api, sink: Sink, make_hook) -> None:
    store = unique("perm")
    reader, writer = api.create_user(groups=["team-a"]), api.create_user(groups=["team-b"])
    make_hook(sink.url + "/reader", store=store, auth=reader["auth"])
    create_entity(api, store, {"secret": True}, auth=writer["auth"])
    shared = create_entity(api, store, {"secret": False, "access": [reader["_id"]]},
                           auth=writer["auth"])
    grouped = create_entity(api, store, {"group": "team-a"})  # admin sets the group
    received = sink.wait_for(2, "/reader")
    time.sleep(0.3)
    assert sorted(r.json()["entityId"] for r in sink.received("/reader")) == sorted(
        [shared["_id"], grouped["_id"]])
    assert len(received) == 2


def test_delete_stops_deliveries(api: Api, sink: Sink, make_hook) -> None:
    store = unique("unsub")
    hook = make_hook(sink.url + "/unsub", store=store)
    create_entity(api, store)
    sink.wait_for(1, "/unsub")
    response = api.http.delete(f"/api/v1/hooks/{hook['id']}", headers=api.as_admin())
    assert response.status_code == 200 and response.json() == {"success": True}
    assert_envelope(api.http.get(f"/api/v1/hooks/{hook['id']}", headers=api.as_admin()), 404)
    for _ in range(3):
        create_entity(api, store)
    time.sleep(0.5)
    assert len(sink.received("/unsub")) == 1


def test_410_deletes_the_hook(api: Api, sink: Sink, make_hook) -> None:
    store = unique("gone")
    sink.respond("/gone", 410)
    hook = make_hook(sink.url + "/gone", store=store)
    create_entity(api, store)
    sink.wait_for(1, "/gone")
    deadline = time.monotonic() + 5
    while api.http.get(f"/api/v1/hooks/{hook['id']}", headers=api.as_admin()).status_code != 404:
        assert time.monotonic() < deadline, "the hook outlived its 410"
        time.sleep(0.05)
    create_entity(api, store)
    time.sleep(0.4)
    assert len(sink.received("/gone")) == 1


def test_a_disabled_owners_hooks_get_nothing_until_enabled_again(api: Api, sink: Sink,
                                                                 make_hook) -> None:
    store = unique("disabled")
    owner = api.create_user()
    make_hook(sink.url + "/disabled", store=store, auth=owner["auth"])
    create_entity(api, store, {"access": [owner["_id"]]})
    sink.wait_for(1, "/disabled")
    flip = api.http.patch(f"/api/v1/users/{owner['_id']}", json={"disabled": True},
                          headers=api.as_admin())
    assert flip.status_code == 200, flip.text
    time.sleep(2.5)  # the matcher keeps an owner's permissions for 2 s
    create_entity(api, store, {"access": [owner["_id"]]})
    time.sleep(1.0)
    assert len(sink.received("/disabled")) == 1
    flip = api.http.patch(f"/api/v1/users/{owner['_id']}", json={"disabled": False},
                          headers=api.as_admin())
    assert flip.status_code == 200, flip.text
    time.sleep(2.5)
    later = create_entity(api, store, {"access": [owner["_id"]]})
    received = sink.wait_for(2, "/disabled")
    assert received[-1].json()["entityId"] == later["_id"]
