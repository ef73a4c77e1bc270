"""Bounds on everything a realtime client can ask for (issue 8, rows 7, 8 and 9; contract §1,
§2 and §5): subscriptions per connection (`GATEWAY_REALTIME_MAX_SUBSCRIPTIONS`), memory
that a flood of subscribes can make the server hold, handshakes and client events counted in
the user's rate limits, and a `since` flood that ends its own connection as a slow consumer
without slowing anyone else's events."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.api import FAST_LIMITS, Api, unique
from tests.support.asserts import assert_envelope
from tests.support.eio import Client, StuckSocket, cookie, open_ws, polling_path
from tests.support.processes import GatewayProcess, wait_for
from tests.support.realtime import (
    bearer,
    connect,
    login_token,
    percentile,
    post,
    rss_bytes,
    session,
    ws_refusal,
)

QUIET = {"GATEWAY_HOOKS_WORKER": "off"}
SETTINGS = {
    "limited": {**FAST_LIMITS, **QUIET, "GATEWAY_REALTIME_MAX_SUBSCRIPTIONS": "5"},
    "default": {**FAST_LIMITS, **QUIET},  # GATEWAY_REALTIME_MAX_SUBSCRIPTIONS: its default, 1000
    "throttled": {**QUIET, "GATEWAY_RATE_LIMIT_PER_SECOND": "5",
                  "GATEWAY_RATE_LIMIT_PER_MINUTE": "1000"},
    "flooded": {**FAST_LIMITS, **QUIET, "GATEWAY_HISTORY_SIZE": "200"},
}


@pytest.fixture(scope="module")
def gateways(start_gateway: Callable[..., GatewayProcess]) -> dict[str, GatewayProcess]:
    """One gateway per setting, started side by side."""
    started = {name: start_gateway(env, wait=False) for name, env in SETTINGS.items()}
    for process in started.values():
        wait_for(process._healthy, timeout=30, what=f"gateway on port {process.port}")
    return started


@pytest.fixture()
def new_user(gateways: dict[str, GatewayProcess]) -> Iterator[Callable[..., dict[str, Any]]]:
    api = Api(gateways["default"].url)  # one Redis: a user made here exists in every gateway
    yield api.create_user
    api.close()


def refused(answer: Any, code: str) -> bool:
    return (isinstance(answer, dict) and answer.get("success") is False
            and answer.get("code") == code and isinstance(answer.get("message"), str)
            and len(answer["message"]) > 3)


async def pipelined(client: Client, specs: list[dict[str, Any]], timeout: float = 60,
                    name: str = "subscribe") -> list[Any]:
    """Send every event at once, without waiting for acks in between; then every ack."""
    loop = asyncio.get_running_loop()
    futures = []
    for spec in specs:
        client._next_ack += 1
        future: asyncio.Future[Any] = loop.create_future()
        client.acks[client._next_ack] = future
        futures.append(future)
        await client.ws.send(f"42{client._next_ack}" + json.dumps([name, spec]))
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))


# -- GATEWAY_REALTIME_MAX_SUBSCRIPTIONS ----------------------------------------------------------------
async def test_one_subscription_over_the_limit_is_refused_with_400_and_an_unsubscribe_frees_a_slot(
        gateways, new_user):
    base = gateways["limited"].url
    user = new_user()
    store = unique("cap")
    entity = post(base, store, user["auth"])["_id"]
    client = await connect(base, cookie(session(base, user)), eio=4)
    topics = [{"store": unique("cap")} for _ in range(4)] + [{"store": store, "id": entity}]
    for topic in topics:
        assert await client.emit("subscribe", topic) == {"success": True}
    answer = await client.subscribe(store=store)
    assert refused(answer, "400"), answer
    assert refused(await client.subscribe(store=store, since="0000000000000-000000"), "400")
    # holding a topic already is no new subscription
    assert await client.emit("subscribe", topics[0]) == {"success": True}
    # the refused subscription gets nothing
    post(base, store, user["auth"], n=1)
    await asyncio.sleep(0.3)
    assert client.events.empty(), "an event for a refused subscription"
    assert await client.emit("unsubscribe", topics[1]) == {"success": True}
    assert await client.subscribe(store=store) == {"success": True}
    later = post(base, store, user["auth"], n=2)["_id"]
    _, event = await client.next_event()
    assert event["entityId"] == later
    # every connection has a limit of its own
    other = await connect(base, cookie(session(base, user)), eio=3)
    for topic in topics:
        assert await other.emit("subscribe", topic) == {"success": True}
    for c in (client, other):
        await c.close()


async def test_concurrent_subscribes_never_exceed_the_limit(gateways, new_user):
    base = gateways["limited"].url
    user = new_user()
    client = await connect(base, cookie(session(base, user)), eio=3)
    answers = await pipelined(client, [{"store": unique("race")} for _ in range(40)])
    assert Counter(a.get("success") for a in answers) == {True: 5, False: 35}, answers
    assert all(refused(a, "400") for a in answers if a.get("success") is not True), answers
    await client.close()


# -- row 7: memory --------------------------------------------------------------------------------------
async def windowed(client: Client, specs: list[dict[str, Any]], window: int) -> list[Any]:
    """Send the events keeping at most `window` unacknowledged; every ack, in order."""
    answers: list[Any] = []
    for start in range(0, len(specs), window):
        answers += await pipelined(client, specs[start:start + window])
    return answers


def flood_specs(round_: int, count: int) -> list[dict[str, Any]]:
    tag = unique("")
    return [{"store": f"flood{round_}x{n}x{tag}"} for n in range(count)]


async def warmed(base: str, sid: str) -> None:
    """Exercise the subscribe path once, so a measurement starts from a warm process."""
    warm = await connect(base, cookie(sid), eio=3)
    await pipelined(warm, [{"store": unique("warm")} for _ in range(200)])
    await warm.close()


MIB = 1024 * 1024


async def test_subscribes_to_distinct_stores_up_to_the_limit_and_closes_do_not_grow_memory(
        gateways, new_user):
    """Row 7: 20,000 subscribes to distinct stores per connection (100 unacknowledged at a
    time): the default limit (1000) holds, and round after round — each connection closed
    after its flood — the gateway's RSS doesn't keep growing."""
    process = gateways["default"]
    user = new_user()
    sid = session(process.url, user)
    pid = process.proc.pid  # type: ignore[union-attr]
    await warmed(process.url, sid)
    before = rss_bytes(pid)
    after_rounds = []
    for round_ in range(3):
        client = await connect(process.url, cookie(sid), eio=3 + round_ % 2)
        answers = await windowed(client, flood_specs(round_, 20_000), 100)
        accepted = sum(1 for a in answers if a.get("success") is True)
        assert accepted == 1000, f"round {round_}: {accepted} subscriptions held at once"
        assert all(refused(a, "400") for a in answers if a.get("success") is not True)
        await client.close()
        await asyncio.sleep(0.3)
        after_rounds.append(rss_bytes(pid))
    growth = [round((rss - before) / MIB, 1) for rss in after_rounds]
    assert after_rounds[-1] - after_rounds[0] < 8 * MIB, f"RSS keeps growing: +{growth} MiB"
    assert after_rounds[-1] - before < 16 * MIB, f"RSS after the rounds: +{growth} MiB"


async def test_a_flood_of_subscribes_sent_at_once_does_not_balloon_memory(gateways, new_user):
    """Row 7, as an attacker sends it: 20,000 subscribes to distinct stores in one go (1 MB on
    the wire), no ack awaited. What one connection can make the server hold is bounded (the
    subscriptions it may keep, the events in flight), not proportional to what it sends."""
    process = gateways["default"]
    user = new_user()
    sid = session(process.url, user)
    pid = process.proc.pid  # type: ignore[union-attr]
    await warmed(process.url, sid)
    before = rss_bytes(pid)
    client = await connect(process.url, cookie(sid), eio=3)
    answers = await pipelined(client, flood_specs(9, 20_000))
    peak = rss_bytes(pid) - before
    accepted = sum(1 for a in answers if a.get("success") is True)
    await client.close()
    assert accepted == 1000, f"{accepted} subscriptions held at once"
    assert peak < 24 * MIB, f"RSS grew {peak / MIB:.0f} MiB with one connection's flood"


# -- row 8: rate limits -----------------------------------------------------------------------------------
async def test_client_events_over_the_rate_limit_are_acknowledged_429(gateways, new_user):
    """Row 8: `subscribe` and `unsubscribe` count against the user's limits (5 per second
    here): a flood is answered `{"success": false, "code": "429", "message": …}` beyond the
    limit, the connection stays, and the next second admits events again."""
    base = gateways["throttled"].url
    user = new_user()
    sid = session(base, user)
    client = await connect(base, cookie(sid), eio=4)
    await asyncio.sleep(1.1)  # the login and the handshake are out of the window
    started = time.monotonic()
    answers = await pipelined(client, [{"store": unique("rl")} for _ in range(20)])
    answers += await pipelined(client, [{"store": "rl"}] * 5, name="unsubscribe")
    took = time.monotonic() - started
    admitted = [a for a in answers if a.get("success") is True]
    limited = [a for a in answers if a.get("success") is not True]
    assert all(refused(a, "429") for a in limited), limited
    assert 1 <= len(admitted) <= 5 * math.ceil(took), (len(admitted), took)
    assert len(limited) >= 25 - 5 * math.ceil(took)
    await asyncio.sleep(1.1)
    assert await client.subscribe(store=unique("rl")) == {"success": True}
    assert not client.closed.is_set()
    await client.close()


async def test_handshakes_of_a_user_over_the_rate_limit_are_refused_with_429(gateways, new_user):
    """Row 8: when the user's REST calls get 429, so do the user's realtime handshakes, on both
    transports, with the envelope and Retry-After."""
    base = gateways["throttled"].url
    user = new_user()
    token = login_token(base, user)["token"]
    await asyncio.sleep(1.1)
    with httpx.Client(base_url=base, headers=bearer(token), timeout=10) as http:
        statuses = [http.get("/api/v1/users/me").status_code for _ in range(8)]
    assert 429 in statuses, statuses
    response = await ws_refusal(base, eio=3, headers=bearer(token))
    assert_envelope(response, 429)
    assert int(response.headers["retry-after"]) >= 1
    polling = httpx.get(base + polling_path(4), headers=bearer(token), timeout=10)
    assert_envelope(polling, 429)
    assert int(polling.headers["retry-after"]) >= 1


async def test_a_burst_of_handshakes_is_admitted_only_up_to_the_rate_limit(gateways, new_user):
    """Row 8: 30 handshakes at once by one user: at most the per-second limit get through."""
    base = gateways["throttled"].url
    user = new_user()
    sid = session(base, user)
    await asyncio.sleep(1.1)

    async def attempt() -> Any:
        try:
            return await open_ws(base, eio=3, headers=cookie(sid))
        except InvalidStatus as refusal:
            return refusal.response

    started = time.monotonic()
    results = await asyncio.gather(*(attempt() for _ in range(30)))
    took = time.monotonic() - started
    opened = [r for r in results if not hasattr(r, "status_code")]
    statuses = Counter(r.status_code for r in results if hasattr(r, "status_code"))
    assert set(statuses) <= {429}, statuses
    assert 1 <= len(opened) <= 5 * math.ceil(took), (len(opened), took, statuses)
    for ws in opened:
        await ws.close()


# -- row 9: a `since` flood ---------------------------------------------------------------------------------
class Probe:
    """Writes one small event every `interval_s` and times each until a subscriber has it."""

    def __init__(self, base: str, client: Client, store: str, auth: dict[str, str]) -> None:
        self.base, self.client, self.store, self.auth = base, client, store, auth
        self.sent: dict[int, float] = {}
        self.latency: dict[int, float] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            _, event = await self.client.events.get()
            n = event["data"].get("probe")
            if n in self.sent:
                self.latency[n] = time.monotonic() - self.sent[n]

    async def run(self, seconds: float, interval_s: float = 0.025) -> list[float]:
        """Latencies of the probes written during the next `seconds`."""
        first = len(self.sent)
        async with httpx.AsyncClient(base_url=self.base, headers=self.auth, timeout=10) as http:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                n = len(self.sent)
                self.sent[n] = time.monotonic()
                try:  # a failed write is a probe that never arrives (an infinite latency)
                    await http.post(f"/api/v1/{self.store}", json={"probe": n})
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(interval_s)
        mine = range(first, len(self.sent))
        settle = time.monotonic() + 5
        while any(n not in self.latency for n in mine) and time.monotonic() < settle:
            await asyncio.sleep(0.02)
        return [self.latency.get(n, math.inf) for n in mine]

    def stop(self) -> None:
        self._reader.cancel()


def closed_by_server(stuck: StuckSocket, timeout: float) -> tuple[bool, int]:
    """Read what the server had queued; True if it closed the socket (EOF or reset)."""
    stuck.sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    read = 0
    while time.monotonic() < deadline:
        try:
            chunk = stuck.sock.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionError:
            return True, read
        if not chunk:
            return True, read
        read += len(chunk)
    return False, read


async def test_a_since_flood_closes_its_own_connection_and_leaves_others_latency_alone(
        gateways, new_user):
    """Row 9: a store holds GATEWAY_HISTORY_SIZE (200) events of 80 KB; a client that reads
    nothing sends 300 `subscribe` with `since: "0000000000000-000000"` at once. Replays count
    against its outbox like live events: it is disconnected as a slow consumer. Meanwhile
    another user's subscriber keeps getting its events quickly (p99 of write-to-delivery)."""
    base = gateways["flooded"].url
    attacker, other = new_user(), new_user()
    store, quiet = unique("flood"), unique("probe")
    blob = "x" * (80 * 1024)
    async with httpx.AsyncClient(base_url=base, headers=attacker["auth"], timeout=30) as http:
        async def fill(start: int) -> None:
            for n in range(start, 200, 4):
                response = await http.post(f"/api/v1/{store}", json={"n": n, "blob": blob})
                assert response.status_code == 201, response.text

        await asyncio.gather(*(fill(start) for start in range(4)))
    client = await connect(base, cookie(session(base, other)), eio=4)
    assert await client.subscribe(store=quiet) == {"success": True}
    probe = Probe(base, client, quiet, other["auth"])
    try:
        before = await probe.run(1.0)
        stuck = StuckSocket(base, eio=3, headers=cookie(session(base, attacker)))
        frames = ['42%d["subscribe",{"store":"%s","since":"0000000000000-000000"}]' % (n, store)
                  for n in range(1, 301)]
        for frame in frames:  # as fast as a client can send them (21 KB)
            stuck.send_text(frame)
        during = await probe.run(2.0)
        closed, read = await asyncio.to_thread(closed_by_server, stuck, 5.0)
        stuck.close()
    finally:
        probe.stop()
        await client.close()
    p99_before, p99_during = percentile(before, 99), percentile(during, 99)
    figures = (f"p50/p99 before {percentile(before, 50) * 1000:.0f}/{p99_before * 1000:.0f} ms, "
               f"during {percentile(during, 50) * 1000:.0f}/{p99_during * 1000:.0f} ms "
               f"({len(during)} probes); the flooder read {read / 1e6:.1f} MB")
    print("since flood:", figures)
    assert closed, f"the flooding connection is still open: {figures}"
    assert read < 64 * 1024 * 1024, f"the flood was not bounded by the outbox: {figures}"
    assert p99_during < 0.5, f"others' latency suffered: {figures}"
