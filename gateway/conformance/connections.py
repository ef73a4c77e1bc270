"""The conformance server's connections: what each suite's reference server does.

Each is a ``gateway.realtime.carrier.Carrier``, so the gateway's own websocket and polling
transports carry them unchanged. Each keeps one timer armed at its next deadline (ping due,
pong missed, connect timeout): the suites measure heartbeats to the millisecond, and a few
test connections do not need the gateway's one-sweep-for-all design.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from gateway.protocol import (
    Connected,
    Disconnected,
    Event,
    EventReceived,
    MessageReceived,
    Session,
)
from gateway.protocol.events import FORCED_CLOSE, PING_TIMEOUT
from gateway.realtime.disconnect import Disconnect

FORCED = Disconnect(FORCED_CLOSE, stay_away=False)

OnClosed = Callable[["ConformanceConnection"], None]


class ConformanceConnection:
    """Transport bookkeeping shared by both behaviours; ``on_event`` is the behaviour."""

    def __init__(self, session: Session, on_closed: OnClosed) -> None:
        self.session = session
        self.wake = asyncio.Event()
        self.polling = False
        self.closed = False
        self.close_reason: str | None = None
        self.opened_at = time.monotonic()
        self._on_closed = on_closed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @property
    def sid(self) -> str:
        return self.session.sid

    def drained(self) -> None:
        """Nothing to account for: the conformance server keeps no outbox limits."""

    def close(self, why: Disconnect = FORCED) -> None:
        if not self.session.closed:
            self.session.close(why.reason)
            self.handle_events()

    def handle_events(self) -> None:
        for event in self.session.events_received():
            if isinstance(event, Disconnected):
                if event.error is not None or event.reason == PING_TIMEOUT:
                    # as node clears its write buffer: a broken or silent client gets nothing
                    # more; only a close packet or a pending GET's noop is still delivered
                    self.session.packets_to_send()
                self.closed = True
                self.close_reason = event.reason
                self._on_closed(self)
            else:
                self.on_event(event)
        if self.session.has_data_to_send or self.closed:
            self.wake.set()
        self._arm()

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()

    def check_timeouts(self, now: float) -> None:
        """Run the timers that are due (on the timer, and before each request uses us)."""
        deadline = self.session.next_deadline()
        if deadline is not None and deadline <= now:
            self.session.check_timeouts(now)
        self.handle_events()

    def _arm(self) -> None:
        deadline = self.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.check_timeouts(time.monotonic())  # re-arms, also when asyncio fired a bit early

    def on_event(self, event: Event) -> None:
        raise NotImplementedError


class EchoConnection(ConformanceConnection):
    """engine.io-protocol's server: ``socket.on("data", data => socket.send(data))``."""

    def on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            self.session.send_message(event.data)


class SocketIOConnection(ConformanceConnection):
    """socket.io-protocol's server (its Readme, "Test suite"): ``auth`` echoed on connect to ``/``
    and ``/custom``; on ``/``, ``message`` → ``message-back`` and ``message-with-ack`` acked
    with its arguments. A client that joins no namespace within ``connect_timeout`` is closed."""

    def __init__(self, session: Session, on_closed: OnClosed, *, connect_timeout: float) -> None:
        super().__init__(session, on_closed)
        self.connect_deadline: float | None = self.opened_at + connect_timeout

    def on_event(self, event: Event) -> None:
        session = self.session
        if isinstance(event, Connected):
            self.connect_deadline = None
            session.send_event(event.namespace, "auth", event.auth or {})
        elif isinstance(event, EventReceived) and event.namespace == "/":
            if event.name == "message":
                session.send_event("/", "message-back", *event.args)
            elif event.name == "message-with-ack" and event.ack_id is not None:
                session.send_ack("/", event.ack_id, *event.args)

    def next_deadline(self) -> float | None:
        deadline = self.session.next_deadline()
        if deadline is None or self.connect_deadline is None:  # None: closed
            return deadline
        return min(deadline, self.connect_deadline)

    def check_timeouts(self, now: float) -> None:
        if self.connect_deadline is not None and now >= self.connect_deadline:
            self.connect_deadline = None
            self.close()  # as socket.io's Client does: no namespace joined, close the socket
        super().check_timeouts(now)
