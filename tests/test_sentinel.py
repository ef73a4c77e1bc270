"""Redis behind Sentinel (issue 9; contract §1 `redis+sentinel://…`, §7 /readyz): two gateway
processes on a real Sentinel set (1 master, 1 replica, 3 sentinels) follow a failover by
themselves, and nothing Redis acknowledged is lost to a realtime client (with `since`) or to
a hook (at least once).

The failover is measured, not just survived: the figures are printed (`-s`) for
docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from gateway.store.redis import redact
from tests.support.api import FAST_LIMITS, unique
from tests.support.eio import Client
from tests.support.processes import DEFAULT_ENV, ROOT, GatewayProcess, free_port, wait_for
from tests.support.realtime import ADMIN_AUTH, connect, history, post
from tests.support.sentinel import SentinelSet
from tests.support.sink import Sink

ENV = {**FAST_LIMITS, "GATEWAY_HOOK_RETRY_SCHEDULE": "0.2,0.5,1,1,1,1",
       "GATEWAY_HOOK_TIMEOUT_S": "2"}


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    started = SentinelSet().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def processes(sentinels: SentinelSet,
              start_gateway: Callable[..., GatewayProcess]) -> Iterator[list[GatewayProcess]]:
    """Two gateways with the defaults, and one acknowledging a write only once a replica has
    it (GATEWAY_REDIS_WAIT_REPLICAS=1), all on the sentinel URL."""
    env = {**ENV, "GATEWAY_REDIS_URL": sentinels.url}
    started = [start_gateway(env, wait=False), start_gateway(env, wait=False),
               start_gateway({**env, "GATEWAY_REDIS_WAIT_REPLICAS": "1"}, wait=False)]
    for process in started:  # started side by side, then awaited
        _wait_ready(process)
    yield started
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def gateways(processes: list[GatewayProcess]) -> list[GatewayProcess]:
    return processes[:2]


@pytest.fixture(scope="module")
def waiting(processes: list[GatewayProcess]) -> GatewayProcess:
    return processes[2]


def _wait_ready(process: GatewayProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process._healthy():
            return
        time.sleep(0.05)
    raise AssertionError(f"gateway did not become ready:\n{process.logs()}")


def run_cli(*args: str, url: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **DEFAULT_ENV, "GATEWAY_REDIS_URL": url}
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# -- the URL ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:26379",  # no master name
    "redis+sentinel://127.0.0.1:26379/gw/not-a-db",
    "redis+sentinel://127.0.0.1:port/gw",
    "redis+sentinel:///gw",
])
def test_a_bad_sentinel_url_is_a_start_up_error_naming_the_variable(url: str) -> None:
    done = run_cli("users", "list", url=url)
    assert done.returncode == 2, done.stderr
    assert "GATEWAY_REDIS_URL" in done.stderr and "Traceback" not in done.stderr


def test_serve_with_unreachable_sentinels_fails_fast() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/gw"
    started = time.monotonic()
    done = run_cli("serve", "--port", str(free_port()), url=url)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "unreachable" in done.stderr and "GATEWAY_REDIS_URL" in done.stderr
    assert took < 8, f"took {took:.1f} s to give up"


def test_redact_hides_the_passwords_of_a_sentinel_url() -> None:
    url = "rediss+sentinel://user:s3cret@h1:1,h2:2/gw/1?sentinel_password=t0ps3cret"
    shown = redact(url)
    assert "s3cret" not in shown and "t0ps3cret" not in shown
    assert "h1:1,h2:2/gw/1" in shown


def test_cli_commands_reach_the_master(sentinels: SentinelSet,
                                       gateways: list[GatewayProcess]) -> None:
    login = unique("sentinel-cli")
    done = run_cli("users", "create", login, "--password", "pw-123456", url=sentinels.url)
    assert done.returncode == 0, done.stderr
    # the gateways see the user the CLI made: one master behind the sentinels
    response = httpx.post(gateways[1].url + "/api/v1/auth", timeout=10,
                          json={"login": login, "password": "pw-123456"})
    assert response.status_code == 200, response.text


# -- before and through a failover -----------------------------------------------------------

async def test_writes_and_realtime_work_across_both_processes(
        gateways: list[GatewayProcess]) -> None:
    store = unique("sentinel")
    clients = [await connect(gw.url, ADMIN_AUTH) for gw in gateways]
    try:
        for client in clients:
            assert (await client.subscribe(store=store))["success"]
        made = [await asyncio.to_thread(post, gw.url, store, n=n)
                for n, gw in enumerate(gateways)]
        for client in clients:
            got = [(await client.next_event())[1]["entityId"] for _ in made]
            assert got == [entity["_id"] for entity in made]
    finally:
        for client in clients:
            await client.close()


def test_wait_replicas_acknowledges_a_write_only_once_a_replica_has_it(
        sentinels: SentinelSet, waiting: GatewayProcess) -> None:
    store = unique("wait")
    made = post(waiting.url, store, n=1)
    assert sentinels.replica is not None and sentinels.replica.proc is not None
    replica = sentinels.replica
    with redis.Redis(port=replica.port) as client:  # there the moment it was acknowledged
        assert client.exists(f"gw:e:{store}:{made['_id']}")
    replica.proc.send_signal(signal.SIGSTOP)  # a replica that doesn't confirm
    try:
        started = time.monotonic()
        response = httpx.post(f"{waiting.url}/api/v1/{store}", json={"n": 2},
                              headers=ADMIN_AUTH, timeout=10)
        took = time.monotonic() - started
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    assert response.status_code == 503, response.text
    assert 0.9 < took < 3, took
    wait_for(sentinels.replica_healthy, timeout=15, what="the replica back in sync")


class Probe:
    """/readyz of every process, every 50 ms, in a thread: (monotonic time, port, status)."""

    def __init__(self, gateways: list[GatewayProcess]) -> None:
        self.seen: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gateways,), daemon=True)
        self._thread.start()

    def _run(self, gateways: list[GatewayProcess]) -> None:
        with httpx.Client(timeout=3) as http:
            while not self._stop.is_set():
                for gw in gateways:
                    try:
                        status = http.get(gw.url + "/readyz").status_code
                    except httpx.HTTPError:
                        status = 0
                    self.seen.append((time.monotonic(), gw.port, status))
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Writer:
    """POSTs to each process in turn, every 20 ms, in a thread; keeps what was acknowledged."""

    def __init__(self, gateways: list[GatewayProcess], store: str) -> None:
        self.acked: list[tuple[float, int, str]] = []  # (time, port, entity id)
        self.refused: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self.paused = threading.Lock()  # held: no request in flight, none starts
        self._thread = threading.Thread(target=self._run, args=(gateways, store), daemon=True)
        self._thread.start()

    def _run(self, gateways: list[GatewayProcess], store: str) -> None:
        n = 0
        with httpx.Client(timeout=5, headers=ADMIN_AUTH) as http:
            while not self._stop.is_set():
                gw = gateways[n % len(gateways)]
                n += 1
                with self.paused:
                    try:
                        response = http.post(f"{gw.url}/api/v1/{store}", json={"n": n})
                        status = response.status_code
                    except httpx.HTTPError:
                        status = 0
                if status == 201:
                    self.acked.append((time.monotonic(), gw.port, response.json()["_id"]))
                else:
                    self.refused.append((time.monotonic(), gw.port, status))
                time.sleep(0.02)

    def acked_since(self, port: int, after: float) -> bool:
        return any(at > after and p == port for at, p, _ in self.acked)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Collector:
    """A realtime client's events, taken as they come; reconnects with `since` if dropped."""

    def __init__(self, base: str, store: str) -> None:
        self.base, self.store = base, store
        self.ids: list[str] = []  # entity ids, in arrival order
        self.last_event_id: str | None = None
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None
        self.client: Client | None = None

    async def start(self) -> Collector:
        self.client = await connect(self.base, ADMIN_AUTH)
        assert (await self.client.subscribe(store=self.store))["success"]
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            assert self.client is not None
            get = asyncio.create_task(self.client.events.get())
            closed = asyncio.create_task(self.client.closed.wait())
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                closed.cancel()
                _name, event = get.result()
                self.ids.append(event["entityId"])
                self.last_event_id = event["id"]
                continue
            get.cancel()
            while not self.client.events.empty():  # what came before the close
                _name, event = self.client.events.get_nowait()
                self.ids.append(event["entityId"])
                self.last_event_id = event["id"]
            await self._reconnect()

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                client = await connect(self.base, ADMIN_AUTH)
                spec: dict[str, Any] = {"store": self.store}
                if self.last_event_id:
                    spec["since"] = self.last_event_id
                ack = await client.subscribe(**spec)
                if not ack.get("success"):
                    await client.close()
                    continue
            except Exception:
                continue
            self.client = client
            self.reconnects += 1
            return

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.client:
            await self.client.close()


def log_entries(process: GatewayProcess, after_wall: float) -> list[dict[str, Any]]:
    found = []
    for line in process.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("ts", 0) > after_wall:
            found.append(entry)
    return found


def errors_after(process: GatewayProcess, after_wall: float) -> list[dict[str, Any]]:
    return [e for e in log_entries(process, after_wall) if e["level"] in ("error", "critical")]


def resubscribed_at(process: GatewayProcess, after_wall: float) -> float:
    """When the realtime listener subscribed again (wall clock), from the process's log."""
    return next(e["ts"] for e in log_entries(process, after_wall)
                if e["msg"] == "realtime listener subscribed")


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic()


async def test_a_master_failover_loses_nothing_acknowledged(
        sentinels: SentinelSet, gateways: list[GatewayProcess], waiting: GatewayProcess) -> None:
    store = unique("failover")
    sink = Sink()
    collectors: list[Collector] = []
    probe = writer = replicated = None
    try:
        made = httpx.post(gateways[0].url + "/api/v1/hooks", headers=ADMIN_AUTH, timeout=10,
                          json={"target_url": sink.url + "/hook", "event": "*", "store": store})
        assert made.status_code == 201, made.text
        # one client on each process stays; one more, on the second, is away meanwhile
        collectors = [await Collector(gw.url, store).start()
                      for gw in (*gateways, gateways[1])]
        probe = Probe(gateways)
        writer = Writer(gateways, store)
        # Through the kill without a pause: each write acknowledged only once the replica has it.
        replicated = Writer([waiting], store)
        await wait_until(lambda: len(writer.acked) >= 20, 10, "writes before the failover")
        assert sentinels.replica_healthy()
        # A client away through the failover, back afterwards with `since`.
        away = collectors[2]
        await away.stop()
        away_since = away.last_event_id
        assert away_since is not None

        # Writes stop for the instant of the kill only: Redis replicates asynchronously, so a
        # write the master acknowledged in the last moment before it died may never reach the
        # replica (docs/scaling.md, "Sentinel"). WAIT confirms the replica has every write.
        with writer.paused:
            killed = sentinels.kill_master()
        killed_wall = time.time()
        promoted = await asyncio.to_thread(sentinels.wait_promoted)
        written_again = {gw.port: await wait_until(
            lambda gw=gw: writer.acked_since(gw.port, promoted), 15,
            f"writes through :{gw.port} after the promotion") for gw in gateways}
        await wait_until(lambda: len(writer.acked) >= len([a for a in writer.acked
                                                          if a[0] < promoted]) + 20,
                         10, "writes after the failover")
        sentinels.bring_back_old_master()  # WAIT 1 needs a replica again
        await wait_until(lambda: replicated.acked_since(waiting.port, promoted), 15,
                         "writes through the waiting gateway after the promotion")
        writer.stop()
        replicated.stop()
        recovered_wall = time.time()

        acked = [entity_id for _at, _port, entity_id in writer.acked]
        waited = [entity_id for _at, _port, entity_id in replicated.acked]
        with sentinels.master_client() as master:  # every write acknowledged after WAIT is there
            assert all(master.exists(f"gw:e:{store}:{entity_id}") for entity_id in waited)
        # The client that was away: `since` recovers what it missed, and nothing twice.
        back = await connect(gateways[1].url, ADMIN_AUTH)
        try:
            ack = await back.subscribe(store=store, since=away_since)
            assert ack == {"success": True, "recovered": True}, ack
            with sentinels.master_client() as master:
                missed = [event["entityId"] for event in history(master, store)
                          if event["id"] > away_since]
            assert missed
            got = [event["entityId"] for _name, event in
                   [await back.next_event() for _ in missed]]
            assert got == missed
            assert back.events.empty()
        finally:
            await back.close()
        # Realtime: every acknowledged write reached the clients that stayed, once, in order.
        for collector in collectors[:2]:
            await wait_until(lambda c=collector: set(acked) | set(waited) <= set(c.ids), 10,
                             f"every acknowledged event on :{collector.base}")
            assert len(collector.ids) == len(set(collector.ids)), "an event came twice"
            assert [i for i in collector.ids if i in set(acked)] == acked
        # Hooks: every acknowledged write delivered, at least once.
        everything = set(acked) | set(waited)
        delivered = {r.json()["entityId"] for r in sink.wait_for(
            len(everything), "/hook", timeout=15,
            where=lambda r: r.json()["entityId"] in everything)}
        assert everything <= delivered

        # A new subscription after the failover: the listener subscribes on the new master.
        fresh_store = unique("after")
        fresh = await connect(gateways[1].url, ADMIN_AUTH)
        try:
            assert (await fresh.subscribe(store=fresh_store))["success"]
            entity = await asyncio.to_thread(post, gateways[0].url, fresh_store, n=1)
            assert (await fresh.next_event())[1]["entityId"] == entity["_id"]
        finally:
            await fresh.close()

        probe.stop()
        by_port = {gw.port: [(at, status) for at, port, status in probe.seen if port == gw.port]
                   for gw in gateways}
        ready_again: dict[int, float] = {}
        for port, seen in by_port.items():
            down = [at for at, status in seen if at > killed and status == 503]
            assert down, f":{port} never answered 503 while no master was reachable"
            up = [at for at, status in seen if at > down[-1] and status == 200]
            assert up, f":{port} did not answer 200 after the failover"
            ready_again[port] = up[0]
            assert all(status in (200, 503) for _at, status in seen), "readyz neither 200 nor 503"

        # The hook worker's groups are on the new master, and nothing is stuck.
        with sentinels.master_client() as master:
            groups = {g["name"] for key in ("gw:hooks:inbox", "gw:hooks:jobs")
                      for g in master.xinfo_groups(key)}
            assert groups == {b"matcher", b"delivery"}, groups
        resubscribed = {}
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
            late = errors_after(gw, recovered_wall)
            assert not late, f"errors after recovery on :{gw.port}: {late[:3]}"
            resubscribed[gw.port] = resubscribed_at(gw, killed_wall) - killed_wall

        print(f"\nfailover: promoted {promoted - killed:.2f} s after the kill; writes again "
              + ", ".join(f":{p} {t - killed:.2f} s" for p, t in written_again.items())
              + "; /readyz 200 again "
              + ", ".join(f":{p} {t - killed:.2f} s" for p, t in ready_again.items())
              + "; realtime listener resubscribed "
              + ", ".join(f":{p} {t:.2f} s" for p, t in resubscribed.items())
              + f"; {len(acked)} writes acknowledged, {len(writer.refused)} refused "
              f"(503) meanwhile; with WAIT: {len(waited)} acknowledged, again "
              f"{min(at for at, _p, _i in replicated.acked if at > promoted) - killed:.2f} s "
              "(old master back as replica at once), "
              f"{len(replicated.refused)} refused; realtime reconnects {[c.reconnects for c in collectors[:2]]}; "
              f"events lost 0; errors logged during it "
              f"{[len(errors_after(gw, killed_wall)) for gw in gateways]}")
    finally:
        for running in (writer, replicated):
            if running is not None:
                running.stop()
        if probe is not None:
            probe.stop()
        for collector in collectors:
            await collector.stop()
        sink.close()
