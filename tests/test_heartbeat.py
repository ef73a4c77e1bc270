"""Heartbeat on time (contract §5): the server's EIO=4 pings go out every pingInterval, however
small pingTimeout is, and silent clients are still closed on time.

First the timer itself (`gateway/realtime/heartbeat.py`) driving real sessions on a real event
loop, then a real gateway with pingInterval 1000 and pingTimeout 200, measured by a raw
Engine.IO client and lived with by python-socketio 5.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest
import socketio

from gateway.protocol import (
    Disconnected,
    Session,
    SessionConfig,
    State,
    UpgradeAborted,
    dialect_for,
)
from gateway.realtime.heartbeat import Heartbeats
from tests.support.api import Api
from tests.support.eio import closed_within, cookie, handshake, login, open_ws, recv
from tests.support.processes import GatewayProcess

INTERVAL_MS, TIMEOUT_MS = 1000, 200


# -- the timer, on real sessions --------------------------------------------------------------
class Beat:
    """A session with what the timer needs: its sid, and events handled (here: recorded)."""

    def __init__(self, eio: int, n: int, config: SessionConfig, *, answers: bool) -> None:
        self.session = Session(dialect_for(str(eio)), f"s{n}", transport="websocket",
                               now=time.monotonic(), config=config)
        self.session.data_to_send()  # the open packet
        self.answers = answers
        self.pings: list[float] = []
        self.closed_at: float | None = None
        self.reason: str | None = None
        self.events: list[tuple[float, object]] = []

    @property
    def sid(self) -> str:
        return self.session.sid

    def handle_events(self) -> None:
        for event in self.session.events_received():
            self.events.append((time.monotonic(), event))
            if isinstance(event, Disconnected):
                self.closed_at, self.reason = time.monotonic(), event.reason
        for frame in self.session.data_to_send():
            if frame == "2":
                self.pings.append(time.monotonic())
                if self.answers:
                    self.session.receive_data("3", now=time.monotonic())


async def test_one_timer_pings_every_session_on_the_clock_and_closes_the_silent_ones() -> None:
    config = SessionConfig(ping_interval_ms=100, ping_timeout_ms=20, upgrade_timeout_ms=60)
    beats: dict[str, Beat] = {}
    timer = Heartbeats(beats.get)
    started = time.monotonic()
    for n in range(300):
        beat = Beat(4 if n % 3 else 3, n, config, answers=n % 2 == 0)
        beats[beat.sid] = beat
        timer.schedule(beat)
    polling = Session(dialect_for("4"), "upgrading", transport="polling", now=started,
                      config=SessionConfig(ping_interval_ms=10_000, upgrade_timeout_ms=60))
    upgrading = Beat(4, 999, config, answers=True)
    upgrading.session = polling
    beats[polling.sid] = upgrading
    timer.schedule(upgrading)  # its first deadline: a ping in 10 s
    polling.start_upgrade(now=started)
    timer.schedule(upgrading)  # as Realtime.upgrade_started does
    await asyncio.sleep(0.55)
    timer.stop()

    for n, beat in enumerate(b for b in beats.values() if b is not upgrading):
        if n % 3 == 0:  # EIO=3: the client pings; silent ones go at interval + timeout
            assert beat.pings == [] and beat.reason == "ping timeout"
            assert beat.closed_at is not None and 0.12 <= beat.closed_at - started < 0.16
        elif n % 2 == 0:  # EIO=4 answering: a ping every 100 ms, on the clock
            assert beat.reason is None, beat.reason
            gaps = [b - a for a, b in zip(beat.pings, beat.pings[1:])]
            assert len(beat.pings) >= 4 and all(0.09 <= gap <= 0.125 for gap in gaps), gaps
            assert 0.1 <= beat.pings[0] - started < 0.125
        else:  # EIO=4 silent: one ping, closed pingTimeout later
            assert len(beat.pings) == 1 and beat.reason == "ping timeout"
            assert beat.closed_at is not None and 0.015 <= beat.closed_at - beat.pings[0] < 0.05
    # An upgrade's timeout, sooner than the next ping, is met too (schedule() after it began).
    assert polling.state is State.POLLING
    [(at, event)] = upgrading.events
    assert event == UpgradeAborted("upgrade timeout") and 0.06 <= at - started < 0.09


async def test_forgotten_connections_leave_the_timer() -> None:
    config = SessionConfig(ping_interval_ms=50, ping_timeout_ms=20)
    beats: dict[str, Beat] = {}
    timer = Heartbeats(beats.get)
    for n in range(3000):
        beat = Beat(4, n, config, answers=True)
        beats[beat.sid] = beat
        timer.schedule(beat)
    for sid in list(beats)[:2900]:
        del beats[sid]
        timer.forget(sid)
    assert len(timer) == 100
    await asyncio.sleep(0.13)
    assert all(len(beat.pings) >= 2 and beat.reason is None for beat in beats.values())
    timer.stop()


# -- a real gateway ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tight(start_gateway: Any) -> GatewayProcess:
    return start_gateway({"GATEWAY_PING_INTERVAL_MS": str(INTERVAL_MS),
                          "GATEWAY_PING_TIMEOUT_MS": str(TIMEOUT_MS)})


@pytest.fixture(scope="module")
def tight_sid(tight: GatewayProcess) -> str:
    api = Api(tight.url)
    try:
        return login(api, api.create_user())
    finally:
        api.close()


async def _ping_times(base: str, sid: str, seconds: float) -> list[float]:
    """A raw EIO=4 websocket that answers every ping at once; when each ping arrived."""
    ws = await open_ws(base, eio=4, headers=cookie(sid))
    await handshake(ws, eio=4)
    pings: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = await recv(ws, (INTERVAL_MS + TIMEOUT_MS) / 1000)  # a client's own limit
        assert frame == "2", frame
        pings.append(time.monotonic())
        await ws.send("3")
    assert ws.close_code is None
    await ws.close()
    return pings


async def _python_socketio_stays(base: str, sid: str, seconds: float) -> list[str]:
    client = socketio.AsyncClient(reconnection=False)
    drops: list[str] = []
    client.on("disconnect", lambda reason=None: drops.append(str(reason)))
    await client.connect(base, headers={"Cookie": f"sid={sid}"}, transports=["websocket"],
                         socketio_path="socket.io", wait_timeout=5)
    try:
        await asyncio.sleep(seconds)
        assert client.connected, drops
    finally:
        await client.disconnect()
    return drops


async def test_eio4_pings_come_every_ping_interval_and_python_socketio_stays(tight, tight_sid):
    pings, _ = await asyncio.gather(_ping_times(tight.url, tight_sid, 6.0),
                                    _python_socketio_stays(tight.url, tight_sid, 10.0))
    gaps_ms = [(b - a) * 1000 for a, b in zip(pings, pings[1:])]
    assert len(gaps_ms) >= 4, gaps_ms
    # On an idle machine every gap is 1000 ms ± 2; a ticking sweep gave 1,250. Allow for a
    # loaded machine without letting a late timer through.
    assert abs(statistics.median(gaps_ms) - INTERVAL_MS) <= 15, gaps_ms
    assert max(gaps_ms) < INTERVAL_MS + TIMEOUT_MS / 2, gaps_ms


async def test_eio3_silent_client_is_still_closed_after_interval_plus_timeout(tight, tight_sid):
    ws = await open_ws(tight.url, eio=3, headers=cookie(tight_sid))
    await handshake(ws, eio=3)
    started = time.monotonic()
    await closed_within(ws, 3.0)
    assert 1.1 <= time.monotonic() - started <= 1.6


async def test_eio4_client_that_does_not_answer_is_closed_ping_timeout_after_the_ping(tight,
                                                                                     tight_sid):
    ws = await open_ws(tight.url, eio=4, headers=cookie(tight_sid))
    await handshake(ws, eio=4)
    assert await recv(ws, 2) == "2"
    pinged = time.monotonic()
    await closed_within(ws, 2.0)
    assert 0.15 <= time.monotonic() - pinged <= 0.6
