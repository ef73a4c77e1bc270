"""Realtime across processes and under faults: two gateways on one Redis, logout closing
connections everywhere, Redis going away and coming back, and a client that stops reading."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.support.api import Api
from tests.support.asserts import assert_envelope
from tests.support.eio import (
    Client,
    StuckSocket,
    cookie,
    get_metrics,
    login,
    metric,
    open_polling,
    poll,
    wait_until,
)
from tests.support.processes import GatewayProcess, RedisServer, free_port, wait_for


@pytest.fixture(scope="module")
def peer(start_gateway: Any) -> GatewayProcess:
    """A second `gateway serve` on the shared Redis."""
    return start_gateway({"GATEWAY_HOOKS_WORKER": "off"})


def create(base: str, auth: dict[str, str], store: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/{store}", json=body, headers=auth, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# -- two processes ---------------------------------------------------------------------------------
async def test_a_write_through_one_process_reaches_subscribers_on_the_other(gateway, peer, user):
    store = "clusterStore"
    here = await Client.connect(gateway.url, eio=4, headers=cookie(user["sid"]))
    there = await Client.connect(peer.url, eio=3, headers=cookie(user["sid"]))
    for client in (here, there):
        assert await client.subscribe(store=store) == {"success": True}
    one = create(gateway.url, user["auth"], store, via="gateway")
    two = create(peer.url, user["auth"], store, via="peer")
    for client in (here, there):
        got = [await client.next_event(), await client.next_event()]
        assert [e["entityId"] for _, e in got] == [one["_id"], two["_id"]]
        await client.close()


# -- logout ------------------------------------------------------------------------------------------
async def test_logout_closes_that_sessions_connections_on_every_process_within_1s(
        gateway, peer, user):
    api = Api(gateway.url)
    leaving, staying = login(api, user), login(api, user)
    api.close()
    doomed = [await Client.connect(gateway.url, eio=3, headers=cookie(leaving)),
              await Client.connect(peer.url, eio=4, headers=cookie(leaving)),
              await Client.connect(peer.url, eio=3, headers=cookie(leaving))]
    kept = [await Client.connect(gateway.url, eio=4, headers=cookie(staying)),
            await Client.connect(peer.url, eio=3, headers=cookie(staying))]
    http = httpx.AsyncClient(timeout=5)
    polling_sid = await open_polling(http, peer.url, cookie(leaving))
    waiting_poll = asyncio.create_task(poll(http, peer.url, polling_sid, cookie(leaving)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    response = httpx.delete(gateway.url + "/api/v1/auth", headers=cookie(leaving))
    assert response.status_code == 200 and response.json() == {"success": True}
    await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in doomed)), 1.0)
    assert await asyncio.wait_for(waiting_poll, 1.0) == ["41", "1"]
    assert time.monotonic() - started < 1.0
    await http.aclose()
    for client in doomed:
        assert client.frames[-2:] == ["41", "1"], client.frames  # a clean server disconnect
    for client in kept:
        assert await client.subscribe(store="afterLogout") == {"success": True}
        await client.close()
    refused = httpx.get(peer.url + "/socket.io/?EIO=3&transport=polling", headers=cookie(leaving))
    assert refused.status_code == 401


# -- Redis faults --------------------------------------------------------------------------------------
class DurableRedis(RedisServer):
    """A redis-server that keeps its data (AOF) in one directory across restarts."""

    def start(self) -> DurableRedis:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, what=f"redis-server on port {self.port}")
        return self

    def halt(self) -> None:
        """Stop the server but keep its directory for the restart."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def test_redis_restart_under_the_gateway(start_gateway):
    redis_server = DurableRedis(port=free_port()).start()
    try:
        gateway = start_gateway({"GATEWAY_REDIS_URL": redis_server.url,
                                 "GATEWAY_HOOKS_WORKER": "off"})
        api = Api(gateway.url)
        user = api.create_user()
        sid = login(api, user)
        api.close()
        store, quiet = "faultStore", "quietStore"  # quiet: no event before the outage
        client = await Client.connect(gateway.url, eio=3, headers=cookie(sid))
        assert await client.subscribe(store=store) == {"success": True}
        assert await client.subscribe(store=quiet) == {"success": True}
        before = create(gateway.url, user["auth"], store)
        assert (await client.next_event())[1]["entityId"] == before["_id"]

        redis_server.halt()
        await wait_until(lambda: httpx.get(gateway.url + "/readyz").status_code == 503, 5)
        await asyncio.sleep(1.5)  # long enough for the listener to be backing off
        assert httpx.get(gateway.url + "/readyz").status_code == 503
        assert httpx.get(gateway.url + "/healthz").status_code == 200
        await client.ws.send("2")  # the client is still connected and answered
        await asyncio.sleep(0.2)
        assert client.frames[-1] == "3" and not client.closed.is_set()

        redis_server.start()
        await wait_until(lambda: httpx.get(gateway.url + "/readyz").status_code == 200, 10)
        # Written at once, maybe before the listener has resubscribed: it must arrive anyway.
        after = [create(gateway.url, user["auth"], quiet if n == 0 else store, n=n)["_id"]
                 for n in range(3)]
        got = [(await client.next_event(timeout=10))[1]["entityId"] for _ in range(3)]
        assert got == after
        await asyncio.sleep(0.2)
        assert client.events.empty()
        await client.close()
        assert "realtime listener lost Redis" in gateway.logs()
        gateway.stop()
    finally:
        redis_server.stop()


# -- a client that stops reading ----------------------------------------------------------------------
async def test_a_stuck_client_is_cut_off_without_delaying_others_or_growing_memory(peer):
    api = Api(peer.url)
    writers, reader = [api.create_user(), api.create_user()], api.create_user()
    reader_sid = login(api, reader)
    api.close()
    store = "slowStore"
    stuck = StuckSocket(peer.url, eio=3, headers=cookie(reader_sid))
    stuck.send_text('42["subscribe",{"store":"%s"}]' % store)
    normal = await Client.connect(peer.url, eio=4, headers=cookie(reader_sid))
    assert await normal.subscribe(store=store) == {"success": True}
    await asyncio.sleep(0.3)  # the stuck socket's subscribe is processed
    before = get_metrics(peer.url)
    process = psutil.Process(peer.proc.pid)  # type: ignore[union-attr]
    rss_before = process.memory_info().rss
    blob = "x" * (256 * 1024)
    count = 120  # 30 MiB towards a client that reads nothing
    written: dict[str, float] = {}  # entity id -> when its write was answered
    peak = rss_before

    def write_all() -> None:
        nonlocal peak
        with httpx.Client(base_url=peer.url, timeout=10) as http:
            for n in range(count):  # two writers take turns: each stays under its rate limit
                response = http.post(f"/api/v1/{store}", headers=writers[n % 2]["auth"],
                                     json={"n": n, "blob": blob, "access": [reader["_id"]]})
                assert response.status_code == 201, response.text
                written[response.json()["_id"]] = time.monotonic()
                peak = max(peak, process.memory_info().rss)

    task = asyncio.create_task(asyncio.to_thread(write_all))
    got: list[str] = []
    lag = 0.0  # the normal subscriber's worst delay behind a write's answer
    while len(got) < count:
        try:
            _, event = await normal.next_event(timeout=10)
        except TimeoutError:
            failed = task.done() and task.exception()
            raise AssertionError(f"normal subscriber stalled after {len(got)} events, "
                                 f"{len(written)} written; writer: {failed!r}") from None
        got.append(event["entityId"])
        if event["entityId"] in written:
            lag = max(lag, time.monotonic() - written[event["entityId"]])
    await task
    assert got == list(written)
    assert lag < 1.0, f"the normal subscriber fell {lag:.2f} s behind"
    after = get_metrics(peer.url)
    slow = "gateway_realtime_slow_consumer_disconnects_total"
    assert metric(after, slow) == metric(before, slow) + 1
    assert '"reason": "slow consumer"' in peer.logs()
    assert peak - rss_before < 64 * 1024 * 1024, (rss_before, peak)
    stuck.close()
    await normal.close()


async def test_a_polling_client_that_stops_polling_is_cut_off_before_its_queue_grows(peer):
    """Over long-polling the queue is the server's: it is bounded in bytes, not only in
    messages, so a few large events are enough to cut off a client that stopped polling."""
    api = Api(peer.url)
    writer, reader = api.create_user(), api.create_user()
    reader_sid = login(api, reader)
    api.close()
    store = "slowPolling"
    async with httpx.AsyncClient(timeout=5) as http:
        sid = await open_polling(http, peer.url, cookie(reader_sid))
        subscribe = '421["subscribe",{"store":"%s"}]' % store
        posted = await http.post(f"{peer.url}/socket.io/?EIO=3&transport=polling&sid={sid}",
                                 content=f"{len(subscribe)}:{subscribe}",
                                 headers=cookie(reader_sid))
        assert posted.status_code == 200
        assert await poll(http, peer.url, sid, cookie(reader_sid)) == ['431[{"success":true}]']
        process = psutil.Process(peer.proc.pid)  # type: ignore[union-attr]
        rss_before = process.memory_info().rss
        blob = "x" * (512 * 1024)
        with httpx.Client(base_url=peer.url, headers=writer["auth"], timeout=10) as writes:
            for n in range(60):  # 30 MiB, never polled
                response = writes.post(f"/api/v1/{store}",
                                       json={"n": n, "blob": blob, "access": [reader["_id"]]})
                assert response.status_code == 201
        await wait_until(lambda: any(sid in line and '"reason": "slow consumer"' in line
                                     for line in peer.logs().splitlines()), 5)
        late = await http.get(f"{peer.url}/socket.io/?EIO=3&transport=polling&sid={sid}",
                              headers=cookie(reader_sid))
        assert_envelope(late, 400)  # the session is gone, as engine.io answers for a closed one
        assert process.memory_info().rss - rss_before < 24 * 1024 * 1024
