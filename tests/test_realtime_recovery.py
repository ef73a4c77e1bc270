"""Contract §5, recovery that cannot lose, double or reorder (issue 8, rows 5 and 6, and the
randomized test).

"Whatever a client's subscribes and unsubscribes, and however many run at once, a connection
receives each event at most once, and the events of one store in id order; a subscription that
stays in place misses none." Checked against the store's history stream (what was written) on
a gateway of the module's own, with real writers POSTing and PATCHing meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.eio import Client, cookie
from tests.support.processes import GatewayProcess
from tests.support.realtime import connect, history, post, session

ENV = {**FAST_LIMITS, "GATEWAY_HOOKS_WORKER": "off", "GATEWAY_HISTORY_SIZE": "100000"}
Topic = tuple[str, str | None]


@pytest.fixture(scope="module")
def gw(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway(ENV)


@pytest.fixture(scope="module")
def people(gw: GatewayProcess) -> Iterator[dict[str, dict[str, Any]]]:
    api = Api(gw.url)
    made = {"reader": api.create_user(), **{f"writer{n}": api.create_user() for n in range(4)}}
    made["reader"]["sid"] = session(gw.url, made["reader"])
    yield made
    api.close()


def everyone(people: dict[str, dict[str, Any]]) -> list[str]:
    """`access` for an entity that the reader reads and every writer may PATCH."""
    return [user["_id"] for user in people.values()]


class Collector:
    """Every event a client receives, in arrival order, taken off its queue as it comes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            _, event = await self.client.events.get()
            self.events.append(event)

    def last_id(self, store: str) -> str | None:
        for event in reversed(self.events):
            if event["store"] == store:
                return str(event["id"])
        return None

    async def until(self, entity_id: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("entityId") == entity_id for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"marker {entity_id} not received in {timeout} s "
                                     f"({len(self.events)} events received)")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._task.cancel()
        await self.client.close()


def compare(got: list[str], expected: list[str]) -> str:
    """What is wrong with a received id sequence, in numbers a reader can act on."""
    counts = Counter(got)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    inversions = sum(1 for a, b in zip(got, got[1:]) if b <= a)
    return (f"{len(got)} received, {len(expected)} expected: {len(missing)} missing "
            f"{missing[:3]}, {sum(c - 1 for c in counts.values())} duplicates, "
            f"{inversions} order inversions, {len(extra)} unexpected {extra[:3]}")


async def write_many(base: str, store: str, users: list[dict[str, Any]], per_writer: int,
                     reader_id: str, entities: list[str] | None = None,
                     started: asyncio.Event | None = None) -> None:
    """One concurrent writer per user: POSTs (and, given entities, PATCHes of them)."""

    async def writer(n: int, user: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=base, headers=user["auth"], timeout=10) as http:
            for i in range(per_writer):
                if entities and i % 3 == 2:
                    target = entities[(n + i) % len(entities)]
                    response = await http.patch(f"/api/v1/{store}/{target}",
                                                json={"by": n, "i": i})
                    assert response.status_code == 200, response.text
                else:
                    response = await http.post(f"/api/v1/{store}",
                                               json={"by": n, "i": i, "access": [reader_id]})
                    assert response.status_code == 201, response.text
                if started is not None and i == 5:
                    started.set()

    await asyncio.gather(*(writer(n, user) for n, user in enumerate(users)))


# -- row 5 ----------------------------------------------------------------------------------------
async def test_a_store_subscription_misses_nothing_while_the_connection_replays_an_entity(
        gw, people, redis_client):
    """Row 5: the connection holds `{store}` while it subscribes to one entity of the store with
    `since` and unsubscribes, again and again, and 3 writers POST and PATCH: the store
    subscription still gets every event, once, in order."""
    store = unique("rowFive")
    reader = people["reader"]
    writers = [people[f"writer{n}"] for n in range(3)]
    entities = [post(gw.url, store, writers[0]["auth"], access=everyone(people))["_id"]
                for _ in range(4)]
    client = await connect(gw.url, cookie(reader["sid"]), eio=3)
    collector = Collector(client)
    assert await client.subscribe(store=store) == {"success": True}
    before = history(redis_client, store)[-1]["id"]  # nothing after it was written yet
    done = asyncio.Event()
    churns = 0

    async def churn(offset: int) -> None:
        nonlocal churns
        while not done.is_set():
            entity = entities[(churns + offset) % len(entities)]
            since = collector.last_id(store) or before
            answer = await client.subscribe(store=store, id=entity, since=since)
            assert answer.get("success") is True, answer
            assert await client.unsubscribe(store=store, id=entity) == {"success": True}
            churns += 1

    churners = [asyncio.create_task(churn(n)) for n in range(2)]
    try:
        await write_many(gw.url, store, writers, 120, reader["_id"], entities)
    finally:
        done.set()
        await asyncio.gather(*churners)
    marker = post(gw.url, store, writers[0]["auth"], access=[reader["_id"]])["_id"]
    await collector.until(marker)
    await asyncio.sleep(0.2)
    expected = [e["id"] for e in history(redis_client, store) if e["id"] > before]
    got = [e["id"] for e in collector.events]
    assert churns >= 10, f"only {churns} entity subscribe/unsubscribe rounds ran"
    assert got == expected, compare(got, expected)
    await collector.close()


# -- row 6 ----------------------------------------------------------------------------------------
async def test_twenty_concurrent_since_subscribes_on_one_connection_deliver_each_event_once_in_order(
        gw, people, redis_client):
    """Row 6: 20 `subscribe {store, since: X}` at once on one connection while writes go on:
    every event after X exactly once, in id order, and each ack says recovered."""
    store = unique("rowSix")
    reader = people["reader"]
    writers = [people[f"writer{n}"] for n in range(3)]
    for _ in range(5):
        post(gw.url, store, writers[0]["auth"], access=[reader["_id"]])
    since = history(redis_client, store)[1]["id"]
    client = await connect(gw.url, cookie(reader["sid"]), eio=4)
    collector = Collector(client)
    started = asyncio.Event()
    writing = asyncio.create_task(write_many(gw.url, store, writers, 60, reader["_id"],
                                             started=started))
    await asyncio.wait_for(started.wait(), 10)
    answers = await asyncio.gather(*(client.subscribe(store=store, since=since)
                                     for _ in range(20)))
    assert answers == [{"success": True, "recovered": True}] * 20, answers
    await writing
    marker = post(gw.url, store, writers[0]["auth"], access=[reader["_id"]])["_id"]
    await collector.until(marker)
    await asyncio.sleep(0.2)
    expected = [e["id"] for e in history(redis_client, store) if e["id"] > since]
    got = [e["id"] for e in collector.events]
    assert got == expected, compare(got, expected)
    await collector.close()


# -- `since` behind what the connection was already sent -------------------------------------------
@pytest.mark.parametrize("again", ["the store again", "an entity of it"])
async def test_a_since_older_than_the_subscriptions_held_recovers_or_says_not_recovered(
        gw, people, redis_client, again):
    """Found by the randomized test. Event A is written; then the connection subscribes to the
    store and receives B. A `subscribe` with a `since` before A — to the store again, or to
    A's entity — can't send A any more without breaking the store's order, and A was never
    sent: so the ack must say `recovered: false` (never `true` with A missing), and nothing
    already sent comes again."""
    store = unique("behind")
    reader, writer = people["reader"], people["writer0"]
    entity = post(gw.url, store, writer["auth"], access=everyone(people))["_id"]
    since = history(redis_client, store)[-1]["id"]
    a = patch_entity(gw.url, store, entity, writer["auth"], n=1)  # the connection isn't there yet
    client = await connect(gw.url, cookie(reader["sid"]), eio=3)
    collector = Collector(client)
    assert await client.subscribe(store=store) == {"success": True}
    b = post(gw.url, store, writer["auth"], access=everyone(people))["_id"]
    await collector.until(b)
    spec: dict[str, Any] = {"store": store, "since": since}
    if again == "an entity of it":
        spec["id"] = entity
    answer = await client.emit("subscribe", spec)
    marker = post(gw.url, store, writer["auth"], access=everyone(people))["_id"]
    await collector.until(marker)
    await asyncio.sleep(0.2)
    got = [e["id"] for e in collector.events]
    assert got == sorted(set(got)), f"twice or out of order: {compare(got, sorted(set(got)))}"
    a_id = next(e["id"] for e in history(redis_client, store) if e["data"].get("n") == a)
    assert answer.get("success") is True, answer
    assert answer.get("recovered") is False or a_id in got, (
        f"{answer}, yet event {a_id} (after since, for this subscription) was never sent")
    await collector.close()


def patch_entity(base: str, store: str, entity_id: str, auth: dict[str, str], n: int) -> int:
    response = httpx.patch(f"{base}/api/v1/{store}/{entity_id}", json={"n": n}, headers=auth,
                           timeout=10)
    assert response.status_code == 200, response.text
    return n


# -- the randomized test ------------------------------------------------------------------------------
@dataclass
class Write:
    seq: int
    store: str
    entity_id: str | None
    started: float  # loop time before the request was sent
    answered: float  # loop time after its answer: the event was committed in between


@dataclass
class Interval:
    """A subscription continuously in place: from the first ack to the unsubscribe's sending."""
    topic: Topic
    start: float
    end: float | None = None
    recovered_since: str | None = None  # the oldest `since` acked `recovered: true` within it


@dataclass
class Actor:
    """One connection doing random subscribes, `since` subscribes and unsubscribes."""
    index: int
    client: Client
    collector: Collector
    rng: random.Random
    locks: dict[Topic, asyncio.Lock] = field(default_factory=dict)
    open: dict[Topic, Interval] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)
    ever: set[Topic] = field(default_factory=set)
    acks: Counter[str] = field(default_factory=Counter)


def matches(topic: Topic, event: dict[str, Any]) -> bool:
    store, entity_id = topic
    return event["store"] == store and (entity_id is None or event.get("entityId") == entity_id)


class RandomRecovery:
    """The scenario behind `test_random_subscribes_and_replays_never_lose_double_or_reorder`."""

    def __init__(self, base: str, redis_client: Any, people: dict[str, dict[str, Any]], *,
                 seed: int, connections: int, seconds: float, writers: int) -> None:
        self.base = base
        self.redis = redis_client
        self.people = people
        self.seed = seed
        self.connections = connections
        self.seconds = seconds
        self.writer_count = writers
        self.rng = random.Random(seed)
        self.stores = [unique("rnd") for _ in range(3)]
        self.entities: dict[str, list[str]] = {}
        self.writes: list[Write] = []
        self.seq = 0
        self.seen_ids: dict[str, list[str]] = {store: [] for store in self.stores}
        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    @property
    def topics(self) -> list[Topic]:
        return [(s, None) for s in self.stores] + [
            (s, e) for s in self.stores for e in self.entities[s]]

    # -- writers ------------------------------------------------------------------------
    async def write(self, http: httpx.AsyncClient, store: str, entity_id: str | None) -> None:
        self.seq += 1
        seq = self.seq
        reader = self.people["reader"]["_id"]
        started = self.now()
        if entity_id is None:
            response = await http.post(f"/api/v1/{store}", json={"seq": seq, "access": [reader]})
            assert response.status_code == 201, response.text
            entity_id = response.json()["_id"]
        else:
            response = await http.patch(f"/api/v1/{store}/{entity_id}", json={"seq": seq})
            assert response.status_code == 200, response.text
        self.writes.append(Write(seq, store, entity_id, started, self.now()))

    async def writer(self, n: int) -> None:
        rng = random.Random(self.seed * 7919 + n)
        auth = self.people[f"writer{n % 4}"]["auth"]
        async with httpx.AsyncClient(base_url=self.base, headers=auth, timeout=10) as http:
            while not self.stop.is_set():
                store = rng.choice(self.stores)
                target = rng.choice(self.entities[store]) if rng.random() < 0.5 else None
                await self.write(http, store, target)
                await asyncio.sleep(rng.uniform(0, 0.01))

    # -- connections ----------------------------------------------------------------------
    def pick_since(self, actor: Actor, store: str) -> str:
        own = [e["id"] for e in actor.collector.events if e["store"] == store]
        pool = own if own and actor.rng.random() < 0.7 else self.seen_ids[store]
        if actor.rng.random() < 0.5:
            return pool[-1]
        return actor.rng.choice(pool[-200:])

    async def subscribe(self, actor: Actor, topic: Topic, since: str | None) -> None:
        spec: dict[str, Any] = {"store": topic[0]}
        if topic[1] is not None:
            spec["id"] = topic[1]
        if since is not None:
            spec["since"] = since
        answer = await actor.client.emit("subscribe", spec, timeout=10)
        acked = self.now()
        assert answer.get("success") is True, (self.seed, actor.index, spec, answer)
        actor.ever.add(topic)
        interval = actor.open.get(topic)
        if interval is None:
            interval = actor.open[topic] = Interval(topic, acked)
            actor.intervals.append(interval)
        if since is not None:
            actor.acks["recovered" if answer.get("recovered") else "not recovered"] += 1
            assert isinstance(answer.get("recovered"), bool), answer
            if answer["recovered"] and (interval.recovered_since is None
                                        or since < interval.recovered_since):
                interval.recovered_since = since
        else:
            actor.acks["plain"] += 1

    async def unsubscribe(self, actor: Actor, topic: Topic) -> None:
        spec: dict[str, Any] = {"store": topic[0]}
        if topic[1] is not None:
            spec["id"] = topic[1]
        interval = actor.open.pop(topic, None)
        if interval is not None:
            interval.end = self.now()  # from here on the subscription may be gone
        answer = await actor.client.emit("unsubscribe", spec, timeout=10)
        assert answer == {"success": True}, (self.seed, actor.index, spec, answer)
        actor.acks["unsubscribe"] += 1

    async def one(self, actor: Actor, topic: Topic) -> None:
        async with actor.locks.setdefault(topic, asyncio.Lock()):
            if topic in actor.open and actor.rng.random() < 0.55:
                await self.unsubscribe(actor, topic)
            else:
                since = self.pick_since(actor, topic[0]) if actor.rng.random() < 0.5 else None
                await self.subscribe(actor, topic, since)

    async def since_burst(self, actor: Actor, topic: Topic) -> None:
        """Several `since` subscribes of one topic at once (row 6, at random)."""
        async with actor.locks.setdefault(topic, asyncio.Lock()):
            sinces = [self.pick_since(actor, topic[0]) for _ in range(actor.rng.randint(2, 5))]
            await asyncio.gather(*(self.subscribe(actor, topic, s) for s in sinces))

    async def act(self, actor: Actor) -> None:
        rng = actor.rng
        while not self.stop.is_set():
            roll = rng.random()
            if roll < 0.55:
                await self.one(actor, rng.choice(self.topics))
            elif roll < 0.85:  # ops on different topics at once on one connection
                topics = rng.sample(self.topics, rng.randint(2, 4))
                await asyncio.gather(*(self.one(actor, t) for t in topics))
            else:
                await self.since_burst(actor, rng.choice(self.topics))
            await asyncio.sleep(rng.uniform(0, 0.03))

    async def note_seen(self) -> None:
        """A shared pool of event ids for `since`, from whatever any connection received."""
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
            for actor in self.actors:
                for event in actor.collector.events[-50:]:
                    ids = self.seen_ids[event["store"]]
                    if not ids or ids[-1] < event["id"]:
                        ids.append(event["id"])

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> None:
        reader = self.people["reader"]
        writer_auth = self.people["writer0"]["auth"]
        for store in self.stores:
            self.entities[store] = [post(self.base, store, writer_auth, seq=-1,
                                         access=everyone(self.people))["_id"] for _ in range(3)]
            self.seen_ids[store] = [e["id"] for e in history(self.redis, store)]
        self.actors = []
        for index in range(self.connections):
            client = await connect(self.base, cookie(reader["sid"]), eio=3 + index % 2)
            self.actors.append(Actor(index, client, Collector(client),
                                     random.Random(self.seed * 104729 + index)))
        tasks = [asyncio.create_task(self.act(a)) for a in self.actors]
        tasks += [asyncio.create_task(self.writer(n)) for n in range(self.writer_count)]
        tasks.append(asyncio.create_task(self.note_seen()))
        await asyncio.sleep(self.seconds)
        self.stop.set()
        await asyncio.gather(*tasks)
        # Last writes: every topic gets one more event, which each subscription in place
        # must receive; then every subscription still open ends now.
        async with httpx.AsyncClient(base_url=self.base, headers=writer_auth, timeout=10) as http:
            for store in self.stores:
                await self.write(http, store, None)
                for entity_id in self.entities[store]:
                    await self.write(http, store, entity_id)
        final = self.now()
        for actor in self.actors:
            for interval in actor.open.values():
                interval.end = final

    def committed(self) -> tuple[dict[tuple[str, str], Write], dict[tuple[str, str], Any]]:
        """Each write by its event's (store, id), from the history; and every event by key."""
        ids: dict[int, tuple[str, str]] = {}
        events: dict[tuple[str, str], dict[str, Any]] = {}
        for store in self.stores:
            for event in history(self.redis, store):
                events[(store, event["id"])] = event
                seq = event.get("data", {}).get("seq")
                if isinstance(seq, int) and seq > 0:
                    ids[seq] = (store, event["id"])
        assert len(ids) == len(self.writes), "every write has its one event"
        return {ids[w.seq]: w for w in self.writes}, events

    @staticmethod
    def required(actor: Actor, committed: dict[tuple[str, str], Write],
                 ) -> dict[tuple[str, str], str]:
        """What the connection's subscriptions must have received, each with the reason."""
        by_topic: dict[Topic, list[Interval]] = {}
        for interval in actor.intervals:
            by_topic.setdefault(interval.topic, []).append(interval)
        need: dict[tuple[str, str], str] = {}
        for key, write in committed.items():
            for topic in ((write.store, None), (write.store, write.entity_id)):
                for interval in by_topic.get(topic, ()):
                    assert interval.end is not None
                    if write.answered > interval.end:
                        continue  # it may have come after the unsubscribe
                    if write.started >= interval.start:
                        need[key] = "written while a subscription was in place"
                    elif (interval.recovered_since is not None
                          and key[1] > interval.recovered_since):
                        need.setdefault(key, "after a `since` acked recovered: true")
        return need

    def check(self) -> list[str]:
        committed, events = self.committed()
        problems = []
        for actor in self.actors:
            got = [(e["store"], e["id"]) for e in actor.collector.events]
            name = f"connection {actor.index} (seed {self.seed})"
            twice = [key for key, count in Counter(got).items() if count > 1]
            if twice:
                problems.append(f"{name}: {len(twice)} events twice, e.g. {twice[:2]}")
            for store in self.stores:
                order = [event_id for s, event_id in got if s == store]
                bad = [(a, b) for a, b in zip(order, order[1:]) if b <= a]
                if bad:
                    problems.append(f"{name}: {len(bad)} order inversions in {store}, "
                                    f"e.g. {bad[:2]}")
            stray = [key for key in got if not any(matches(t, events[key]) for t in actor.ever)]
            if stray:
                problems.append(f"{name}: {len(stray)} events of topics never subscribed")
            need = self.required(actor, committed)
            missing = sorted(set(need) - set(got))
            if missing:
                why = Counter(need[key] for key in missing)
                problems.append(f"{name}: {len(missing)} events missed ({dict(why)}), "
                                f"e.g. {[(key, need[key]) for key in missing[:2]]}")
        return problems

    async def settle(self, timeout: float) -> None:
        """Wait until every connection has what it must receive (or the time is up), then a
        little longer for anything that should not come."""
        committed, _ = self.committed()
        needs = [self.required(a, committed) for a in self.actors]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(set(need) <= {(e["store"], e["id"]) for e in a.collector.events}
                   for a, need in zip(self.actors, needs)):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)

    async def close(self) -> None:
        for actor in self.actors:
            await actor.collector.close()


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def test_random_subscribes_and_replays_never_lose_double_or_reorder(gw, people, redis_client):
    """Many connections (concurrently on each one, too) subscribe, subscribe with `since` and
    unsubscribe at random on store and entity topics while several writers write. Each
    connection's received sequence: no event twice, each store's events in id order, nothing
    of a topic it never held, and every event its subscriptions must have — committed while a
    subscription was continuously in place (from its ack to its unsubscribe), or after a
    `since` acked `recovered: true` for it. Seed and sizes: GATEWAY_TEST_SEED,
    GATEWAY_TEST_RANDOM_CONNECTIONS, GATEWAY_TEST_RANDOM_SECONDS, GATEWAY_TEST_RANDOM_WRITERS."""
    seed = _int_env("GATEWAY_TEST_SEED", random.SystemRandom().randrange(1 << 30))
    print(f"random recovery: seed {seed} (rerun with GATEWAY_TEST_SEED={seed})")
    scenario = RandomRecovery(gw.url, redis_client, people, seed=seed,
                              connections=_int_env("GATEWAY_TEST_RANDOM_CONNECTIONS", 20),
                              seconds=float(os.environ.get("GATEWAY_TEST_RANDOM_SECONDS", 6)),
                              writers=_int_env("GATEWAY_TEST_RANDOM_WRITERS", 4))
    try:
        await scenario.run()
        await scenario.settle(10.0)
        problems = scenario.check()
        acks = sum((a.acks for a in scenario.actors), Counter())
        print(f"random recovery: {len(scenario.writes)} writes, acks {dict(acks)}, "
              f"{sum(len(a.collector.events) for a in scenario.actors)} deliveries")
        assert acks["recovered"] >= 10 and acks["unsubscribe"] >= 50, acks  # it did exercise
        assert not problems, (f"seed {seed}: {len(problems)} problems on "
                              f"{len({p.split(':')[0] for p in problems})} of "
                              f"{len(scenario.actors)} connections; the first:\n"
                              + "\n".join(problems[:6]))
    finally:
        await scenario.close()
