"""The realtime component: the hub, the connections by sid, and one heartbeat timer for all.

Every connection's heartbeat (pings due, silent clients, stalled upgrades) runs on one
min-heap with one loop timer armed at the earliest deadline (`heartbeat.py`): each deadline is
met to the millisecond, and 20k connections cost no task and no sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.auth.principal import Principal
from gateway.handoff import new_sid
from gateway.metrics import Metrics
from gateway.protocol import Session, SessionConfig, dialect_for
from gateway.realtime.connection import Connection, Sink
from gateway.realtime.disconnect import SHUTDOWN, Disconnect
from gateway.realtime.heartbeat import Heartbeats
from gateway.realtime.hub import Hub
from gateway.realtime.lifetimes import Lifetimes
from gateway.ratelimit import RateLimiter
from gateway.settings import RealtimeSettings
from gateway.store.entities import Entities
from gateway.store.redis import Redis

log = logging.getLogger(__name__)

class Realtime:
    def __init__(self, redis: Redis, *, settings: RealtimeSettings, entities: Entities,
                 metrics: Metrics, max_pending: int = 1000,
                 max_pending_bytes: int = 8 * 1024 * 1024,
                 ratelimiter: RateLimiter | None = None,
                 forget_user: Callable[[str | None], None] = lambda _: None) -> None:
        self.hub = Hub(redis, metrics=metrics,
                       lifetimes=Lifetimes(redis, forget_user=forget_user))
        self.ratelimiter = ratelimiter  # client events count against the user's limits
        self.max_subscriptions = settings.max_subscriptions
        self.entities = entities
        self.metrics = metrics
        self.max_pending = max_pending  # messages queued for a polling client, at most
        self.max_pending_bytes = max_pending_bytes  # and their characters, at most
        self.config = SessionConfig(ping_interval_ms=settings.ping_interval_ms,
                                    ping_timeout_ms=settings.ping_timeout_ms)
        self.connections: dict[str, Connection] = {}
        self.accepting = True
        self.heartbeats = Heartbeats(self.connections.get)

    async def start(self) -> None:
        await self.hub.start()

    async def stop(self) -> None:
        await self.close_all(SHUTDOWN)
        self.heartbeats.stop()
        await self.hub.stop()

    # -- connections ---------------------------------------------------------------------
    def open(self, eio: str, principal: Principal, transport: str,
             sink: Sink | None = None) -> Connection:
        session = Session(dialect_for(eio), new_sid(), transport=transport,
                          now=time.monotonic(), config=self.config)
        conn = Connection(session, principal, transport, self)
        conn.sink = sink
        self.connections[conn.sid] = conn
        self.hub.register(conn)
        self.metrics.connections.labels(str(conn.eio), transport).inc()
        conn.handle_events()
        self.heartbeats.schedule(conn)
        return conn

    def get(self, sid: str) -> Connection | None:
        return self.connections.get(sid)

    def forget(self, conn: Connection) -> None:
        if self.connections.pop(conn.sid, None) is not None:
            self.heartbeats.forget(conn.sid)
            self.hub.unregister(conn)
            self.metrics.connections.labels(str(conn.eio), conn.transport).dec()

    def on_transport_change(self, conn: Connection, old: str, new: str) -> None:
        self.metrics.connections.labels(str(conn.eio), old).dec()
        self.metrics.connections.labels(str(conn.eio), new).inc()

    def upgrade_started(self, conn: Connection) -> None:
        """A websocket began upgrading `conn`: its upgrade timeout may be its next deadline."""
        self.heartbeats.schedule(conn)

    async def close_all(self, why: Disconnect, grace_s: float = 2.0) -> None:
        """Stop accepting; end every connection; give transports a moment to write it out.

        A client to stay away gets `41` and `1` (`Connection.close`). Otherwise — a shutdown —
        the connection is dropped at the Engine.IO level with no packet at all: the websocket
        closes (1001, going away) and a pending poll returns a noop, which every socket.io client
        takes as a lost connection and reconnects from by itself (python-socketio's client
        does not after an Engine.IO close packet `1`).
        """
        self.accepting = False
        for conn in list(self.connections.values()):
            try:
                conn.close(why)
            except Exception:
                log.exception("closing a connection failed", extra={"sid": conn.sid})
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

