"""Contract §5 subscriptions: rooms per store and per entity, acks and their errors, the
read-permission check on every event, and `since` recovery without gap or duplicate."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.events.ids import from_stream_id
from gateway.store import keys
from tests.support.api import ADMIN, Api, basic, unique
from tests.support.eio import Client, cookie, login
from tests.support.processes import GatewayProcess

ADMIN_AUTH = basic(*ADMIN)


class People:
    """Users made once for the module: alice (teamA), bob (teamB), carol (no group)."""

    def __init__(self, api: Api) -> None:
        self.alice = api.create_user(groups=["teamA"])
        self.bob = api.create_user(groups=["teamB"])
        self.carol = api.create_user()
        for user in (self.alice, self.bob, self.carol):
            user["sid"] = login(api, user)


@pytest.fixture(scope="module")
def people(gateway: GatewayProcess) -> Iterator[People]:
    api = Api(gateway.url)
    yield People(api)
    api.close()


def write(base: str, method: str, path: str, auth: dict[str, str] = ADMIN_AUTH,
          **body: Any) -> dict[str, Any]:
    response = httpx.request(method, base + path, json=body if method != "DELETE" else None,
                             headers=auth, timeout=10)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()  # type: ignore[no-any-return]


async def connect(base: str, user: dict[str, Any], eio: int = 3) -> Client:
    return await Client.connect(base, eio=eio, headers=cookie(user["sid"]))


def ok(answer: Any) -> bool:
    return answer == {"success": True}


# -- rooms ---------------------------------------------------------------------------------------
async def test_store_and_entity_subscriptions_get_what_they_cover(gateway):
    store, other = unique("rooms"), unique("roomsOther")
    first = write(gateway.url, "POST", f"/api/v1/{store}", n=0)
    second = write(gateway.url, "POST", f"/api/v1/{store}", n=0)
    admin_sid = login_admin(gateway.url)
    whole = await Client.connect(gateway.url, eio=3, headers=cookie(admin_sid))
    single = await Client.connect(gateway.url, eio=4, headers=cookie(admin_sid))
    assert ok(await whole.subscribe(store=store))
    assert ok(await single.subscribe(store=store, id=first["_id"]))
    write(gateway.url, "PATCH", f"/api/v1/{store}/{second['_id']}", n=1)
    write(gateway.url, "POST", f"/api/v1/{other}", n=1)  # a store nobody here subscribed to
    write(gateway.url, "PATCH", f"/api/v1/{store}/{first['_id']}", n=1)
    write(gateway.url, "DELETE", f"/api/v1/{store}/{first['_id']}")
    seen_whole = await whole.events_until(first["_id"])
    seen_whole += [await whole.next_event()]
    assert [(n, e["entityId"]) for n, e in seen_whole] == [
        ("entity.updated", second["_id"]), ("entity.updated", first["_id"]),
        ("entity.deleted", first["_id"])]
    seen_single = [await single.next_event(), await single.next_event()]
    assert [(n, e["entityId"]) for n, e in seen_single] == [
        ("entity.updated", first["_id"]), ("entity.deleted", first["_id"])]
    assert single.events.empty() and whole.events.empty()
    await whole.close()
    await single.close()


def login_admin(base: str) -> str:
    api = Api(base)
    try:
        return login(api, {"login": ADMIN[0], "password": ADMIN[1]})
    finally:
        api.close()


async def test_unsubscribe_stops_events(gateway, people):
    store, marker_store = unique("unsub"), unique("unsubMarker")
    client = await connect(gateway.url, people.alice)
    assert ok(await client.subscribe(store=store))
    assert ok(await client.subscribe(store=marker_store))
    write(gateway.url, "POST", f"/api/v1/{store}", auth=people.alice["auth"], n=1)
    name, event = await client.next_event()
    assert (name, event["store"]) == ("entity.created", store)
    assert ok(await client.unsubscribe(store=store))
    write(gateway.url, "POST", f"/api/v1/{store}", auth=people.alice["auth"], n=2)
    marker = write(gateway.url, "POST", f"/api/v1/{marker_store}", auth=people.alice["auth"])
    assert [e["store"] for _, e in await client.events_until(marker["_id"])] == [marker_store]
    # per-entity: unsubscribing the entity leaves the store subscription alone
    entity = write(gateway.url, "POST", f"/api/v1/{marker_store}", auth=people.alice["auth"])
    await client.next_event()
    assert ok(await client.subscribe(store=marker_store, id=entity["_id"]))
    assert ok(await client.unsubscribe(store=marker_store, id=entity["_id"]))
    write(gateway.url, "PATCH", f"/api/v1/{marker_store}/{entity['_id']}",
          auth=people.alice["auth"], n=3)
    name, event = await client.next_event()
    assert (name, event["entityId"]) == ("entity.updated", entity["_id"])
    await asyncio.sleep(0.2)
    assert client.events.empty(), "one subscription, one copy"
    await client.close()


# -- acks ------------------------------------------------------------------------------------------
async def test_subscribe_errors_answer_with_codes(gateway, people):
    private_store = unique("acks")
    private = write(gateway.url, "POST", f"/api/v1/{private_store}", n=1)  # admin's alone
    client = await connect(gateway.url, people.alice, eio=4)
    cases: list[tuple[str, Any, str]] = [
        ("subscribe", {"store": "1bad"}, "400"),
        ("subscribe", {"store": "auth"}, "400"),
        ("subscribe", {"store": "x" * 65}, "400"),
        ("subscribe", {}, "400"),
        ("subscribe", "orders", "400"),
        ("subscribe", {"store": 5}, "400"),
        ("subscribe", {"store": "orders", "id": "not-an-id"}, "400"),
        ("subscribe", {"store": "orders", "id": "A" * 24}, "400"),
        ("subscribe", {"store": "orders", "id": "0" * 24}, "404"),
        ("subscribe", {"store": private_store, "id": private["_id"]}, "404"),
        ("subscribe", {"store": "orders", "since": "yesterday"}, "400"),
        ("subscribe", {"store": "orders", "since": 12}, "400"),
        ("unsubscribe", {"store": "1bad"}, "400"),
        ("publish", {"store": "orders"}, "400"),
    ]
    for name, arg, code in cases:
        answer = await client.emit(name, arg)
        assert answer.get("success") is False and answer.get("code") == code, (name, arg, answer)
        assert isinstance(answer.get("message"), str) and answer["message"], answer
    # the connection survives every refusal
    assert ok(await client.subscribe(store="orders"))
    assert ok(await client.unsubscribe(store="orders"))
    await client.close()


# -- permissions ------------------------------------------------------------------------------------
async def test_a_subscriber_never_receives_what_it_may_not_read(gateway, people):
    store = unique("perm")
    alice, bob, carol = people.alice, people.bob, people.carol
    clients = {"alice": await connect(gateway.url, alice, eio=3),
               "bob": await connect(gateway.url, bob, eio=4),
               "carol": await connect(gateway.url, carol, eio=3)}
    for client in clients.values():
        assert ok(await client.subscribe(store=store))
    url = f"/api/v1/{store}"
    made = {
        "private": write(gateway.url, "POST", url, n=1),
        "alice_access": write(gateway.url, "POST", url, access=[alice["_id"]]),
        "teamA_access": write(gateway.url, "POST", url, access=["teamA"]),
        "teamB_branch": write(gateway.url, "POST", url, branch=["teamB"]),
        "bob_own": write(gateway.url, "POST", url, auth=bob["auth"]),
        "alice_own": write(gateway.url, "POST", url, auth=alice["auth"]),
        "carol_branch": write(gateway.url, "POST", url, branch=[carol["_id"]]),
    }
    write(gateway.url, "PATCH", f"{url}/{made['private']['_id']}", n=2)
    write(gateway.url, "DELETE", f"{url}/{made['bob_own']['_id']}", auth=bob["auth"])
    write(gateway.url, "PUT", f"{url}/{made['teamB_branch']['_id']}", n=3)
    published = {
        "pub_bob": write(gateway.url, "POST", "/api/v1/events", type="order.shipped", store=store,
                         entityId="a" * 24, data={"owner": bob["_id"], "n": 1}),
        "pub_teamA": write(gateway.url, "POST", "/api/v1/events", type="order.shipped",
                           store=store, data={"owner": "someone", "group": "teamA"}),
        "pub_nobody": write(gateway.url, "POST", "/api/v1/events", type="order.shipped",
                            store=store, data={"owner": "someone"}),
    }
    marker = write(gateway.url, "POST", url, access=[alice["_id"], bob["_id"], carol["_id"]])
    expected = {
        "alice": [("entity.created", "alice_access"), ("entity.created", "teamA_access"),
                  ("entity.created", "alice_own"), ("order.shipped", "pub_teamA")],
        "bob": [("entity.created", "teamB_branch"), ("entity.created", "bob_own"),
                ("entity.deleted", "bob_own"), ("entity.updated", "teamB_branch"),
                ("order.shipped", "pub_bob")],
        "carol": [("entity.created", "carol_branch")],
    }
    names = {entity["_id"]: label for label, entity in made.items()}
    event_labels = {answer["id"]: label for label, answer in published.items()}
    for who, client in clients.items():
        got = await client.events_until(marker["_id"])
        labels = [(name, event_labels.get(event["id"]) or names.get(event["entityId"]))
                  for name, event in got[:-1]]
        assert labels == expected[who], who
        await client.close()


async def test_entity_subscription_to_an_unreadable_entity_is_404(gateway, people):
    store = unique("perm404")
    entity = write(gateway.url, "POST", f"/api/v1/{store}", access=[people.alice["_id"]])
    bob = await connect(gateway.url, people.bob)
    answer = await bob.subscribe(store=store, id=entity["_id"])
    assert answer["success"] is False and answer["code"] == "404"
    alice = await connect(gateway.url, people.alice)
    assert ok(await alice.subscribe(store=store, id=entity["_id"]))
    await alice.close()
    await bob.close()


# -- recovery -------------------------------------------------------------------------------------
async def test_since_recovers_exactly_the_missed_events_then_live_ones(gateway, people):
    store = unique("recover")
    auth = people.alice["auth"]
    client = await connect(gateway.url, people.alice)
    assert ok(await client.subscribe(store=store))
    for n in range(3):
        write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=n)
    seen = [await client.next_event() for _ in range(3)]
    last = seen[-1][1]["id"]
    await client.close()
    missed = [write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=n)["_id"]
              for n in range(3, 7)]
    for eio in (3, 4):
        client = await connect(gateway.url, people.alice, eio=eio)
        assert await client.subscribe(store=store, since=last) == {"success": True,
                                                                   "recovered": True}
        replayed = [await client.next_event() for _ in range(4)]
        assert [e["entityId"] for _, e in replayed] == missed
        ids = [e["id"] for _, e in replayed]
        assert ids == sorted(ids) and ids[0] > last
        live = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=99)
        name, event = await client.next_event()
        assert (name, event["entityId"]) == ("entity.created", live["_id"])
        await asyncio.sleep(0.2)
        assert client.events.empty(), "no duplicate after the live event"
        await client.close()
        last = event["id"]
        missed = [write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=n)["_id"]
                  for n in range(4)]


async def test_since_on_an_entity_replays_only_that_entity(gateway, people):
    store = unique("recoverOne")
    auth = people.alice["auth"]
    one = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=0)
    two = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=0)
    client = await connect(gateway.url, people.alice)
    assert ok(await client.subscribe(store=store))
    write(gateway.url, "PATCH", f"/api/v1/{store}/{one['_id']}", auth=auth, n=1)
    _, event = await client.next_event()
    await client.close()
    write(gateway.url, "PATCH", f"/api/v1/{store}/{two['_id']}", auth=auth, n=2)
    write(gateway.url, "PATCH", f"/api/v1/{store}/{one['_id']}", auth=auth, n=3)
    client = await connect(gateway.url, people.alice)
    assert await client.subscribe(store=store, id=one["_id"], since=event["id"]) == {
        "success": True, "recovered": True}
    name, replayed = await client.next_event()
    assert (name, replayed["entityId"], replayed["data"]["n"]) == ("entity.updated", one["_id"], 3)
    await asyncio.sleep(0.2)
    assert client.events.empty()
    # since = the newest id: nothing missed, recovered
    assert await client.subscribe(store=store, since=replayed["id"]) == {
        "success": True, "recovered": True}
    await asyncio.sleep(0.2)
    assert client.events.empty()
    await client.close()


async def test_since_older_than_the_history_is_not_recovered(start_gateway, people, redis_client):
    short = start_gateway({"GATEWAY_HISTORY_SIZE": "3", "GATEWAY_HOOKS_WORKER": "off"})
    store = unique("shortHistory")
    auth = people.alice["auth"]
    client = await connect(short.url, people.alice)
    assert ok(await client.subscribe(store=store))
    write(short.url, "POST", f"/api/v1/{store}", auth=auth, n=0)
    _, first = await client.next_event()
    await client.close()
    later = [write(short.url, "POST", f"/api/v1/{store}", auth=auth, n=n)["_id"]
             for n in range(1, 6)]
    retained = [from_stream_id(sid) for sid, _ in redis_client.xrange(keys.history(store))]
    assert len(retained) == 3
    client = await connect(short.url, people.alice, eio=4)
    assert await client.subscribe(store=store, since=first["id"]) == {"success": True,
                                                                     "recovered": False}
    replayed = [await client.next_event() for _ in range(3)]
    assert [e["id"] for _, e in replayed] == retained
    assert [e["entityId"] for _, e in replayed] == later[-3:]
    await client.close()


async def test_since_while_writes_race_has_no_gap_and_no_duplicate(gateway, people, redis_client):
    """Subscribing with `since` while events are being written: each late subscriber gets every
    event after `since` (checked against the history stream) exactly once, in order."""
    store = unique("race")
    auth = people.alice["auth"]
    for n in range(5):
        write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=n)
    since = [from_stream_id(sid) for sid, _ in redis_client.xrange(keys.history(store))][1]
    total_writes = 150
    started = threading.Event()
    counter = iter(range(total_writes))
    lock = threading.Lock()
    failures: list[str] = []
    api = Api(gateway.url)
    # one writer user per thread: each stays under the per-user rate limit
    writers = [api.create_user() for _ in range(3)]
    api.close()

    def writer(user: dict[str, Any]) -> None:
        with httpx.Client(base_url=gateway.url, headers=user["auth"], timeout=10) as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                response = http.post(f"/api/v1/{store}", json={"n": n,
                                                               "access": [people.alice["_id"]]})
                if response.status_code != 201:
                    failures.append(response.text)
                if n >= 10:
                    started.set()

    threads = [threading.Thread(target=writer, args=(user,)) for user in writers]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(started.wait, 10)
    clients = []
    for _ in range(6):  # late subscribers at different moments of the burst
        client = await connect(gateway.url, people.alice, eio=3 if len(clients) % 2 else 4)
        assert await client.subscribe(store=store, since=since) == {"success": True,
                                                                    "recovered": True}
        clients.append(client)
        await asyncio.sleep(0.03)
    for thread in threads:
        await asyncio.to_thread(thread.join, 30)
    assert not failures, failures[:3]
    marker = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=-1)
    history = [from_stream_id(sid) for sid, _ in redis_client.xrange(keys.history(store))]
    expected = [event_id for event_id in history if event_id > since]
    assert len(expected) == total_writes + 3 + 1
    for client in clients:
        got = [event["id"] for _, event in await client.events_until(marker["_id"], timeout=10)]
        assert got == expected
        await client.close()


async def test_store_and_entity_subscription_together_deliver_one_copy(gateway, people):
    store = unique("overlap")
    auth = people.alice["auth"]
    entity = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=0)
    client = await connect(gateway.url, people.alice, eio=4)
    assert ok(await client.subscribe(store=store, id=entity["_id"]))
    assert ok(await client.subscribe(store=store))
    write(gateway.url, "PATCH", f"/api/v1/{store}/{entity['_id']}", auth=auth, n=1)
    marker = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth)
    got = await client.events_until(marker["_id"])
    assert [(n, e["entityId"]) for n, e in got] == [("entity.updated", entity["_id"]),
                                                    ("entity.created", marker["_id"])]
    await client.close()


async def test_recovery_replays_only_what_the_user_may_read(gateway, people):
    store = unique("recoverPerm")
    bob = people.bob
    client = await connect(gateway.url, bob)
    assert ok(await client.subscribe(store=store))
    first = write(gateway.url, "POST", f"/api/v1/{store}", auth=bob["auth"])
    _, seen = await client.next_event()
    await client.close()
    hidden = write(gateway.url, "POST", f"/api/v1/{store}", n=1)  # admin's, not bob's
    shared = write(gateway.url, "POST", f"/api/v1/{store}", branch=["teamB"])
    write(gateway.url, "PATCH", f"/api/v1/{store}/{hidden['_id']}", n=2)
    own = write(gateway.url, "PATCH", f"/api/v1/{store}/{first['_id']}", auth=bob["auth"], n=3)
    client = await connect(gateway.url, bob, eio=4)
    assert await client.subscribe(store=store, since=seen["id"]) == {"success": True,
                                                                     "recovered": True}
    got = await client.events_until(own["_id"])
    assert [(n, e["entityId"]) for n, e in got] == [("entity.created", shared["_id"]),
                                                    ("entity.updated", first["_id"])]
    await client.close()


async def test_since_newer_than_the_store_s_events_does_not_hold_back_live_ones(gateway, people):
    """A `since` from another store (or the future) is after everything retained here: nothing
    to replay, and every later event of this store still arrives."""
    store, elsewhere = unique("sinceAhead"), unique("sinceAheadOther")
    auth = people.alice["auth"]
    write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=0)
    client = await connect(gateway.url, people.alice)
    assert ok(await client.subscribe(store=elsewhere))
    write(gateway.url, "POST", f"/api/v1/{elsewhere}", auth=auth, n=0)
    _, other = await client.next_event()
    for since in (other["id"], "9999999999999-000000"):
        answer = await client.subscribe(store=store, since=since)
        assert answer == {"success": True, "recovered": True}, answer
        live = write(gateway.url, "POST", f"/api/v1/{store}", auth=auth, n=1)
        name, event = await client.next_event()
        assert (name, event["entityId"]) == ("entity.created", live["_id"])
        assert ok(await client.unsubscribe(store=store))
    await client.close()
