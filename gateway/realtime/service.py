"""The realtime component: the hub, the connections by sid, and one heartbeat timer for all.

One timer task sweeps every connection each tick (at most a second apart) and lets its session
decide whether a ping is due or the client is dead: 20k connections cost one task and 20k
cheap comparisons a second, not 20k sleeping tasks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from gateway.auth.principal import Principal
from gateway.metrics import Metrics
from gateway.protocol import Session, SessionConfig, dialect_for
from gateway.realtime.connection import Connection, Sink
from gateway.realtime.disconnect import SHUTDOWN, Disconnect
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
        self.hub = Hub(redis, metrics=metrics, lifetimes=Lifetimes(forget_user=forget_user))
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
        self._tick = min(1.0, settings.ping_interval_ms / 4000)
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.hub.start()
        self._timer = asyncio.create_task(self._heartbeat(), name="realtime-heartbeat")

    async def stop(self) -> None:
        await self.close_all(SHUTDOWN)
        if self._timer:
            self._timer.cancel()
        await self.hub.stop()

    # -- connections ---------------------------------------------------------------------
    def open(self, eio: str, principal: Principal, transport: str,
             sink: Sink | None = None) -> Connection:
        session = Session(dialect_for(eio), secrets.token_urlsafe(15), transport=transport,
                          now=time.monotonic(), config=self.config)
        conn = Connection(session, principal, transport, self)
        conn.sink = sink
        self.connections[conn.sid] = conn
        self.hub.register(conn)
        self.metrics.connections.labels(str(conn.eio), transport).inc()
        conn.handle_events()
        return conn

    def get(self, sid: str) -> Connection | None:
        return self.connections.get(sid)

    def forget(self, conn: Connection) -> None:
        if self.connections.pop(conn.sid, None) is not None:
            self.hub.unregister(conn)
            self.metrics.connections.labels(str(conn.eio), conn.transport).dec()

    def on_transport_change(self, conn: Connection, old: str, new: str) -> None:
        self.metrics.connections.labels(str(conn.eio), old).dec()
        self.metrics.connections.labels(str(conn.eio), new).inc()

    async def close_all(self, why: Disconnect, grace_s: float = 2.0) -> None:
        """Stop accepting; send every client its close packets; give transports a moment."""
        self.accepting = False
        for conn in list(self.connections.values()):
            conn.close(why)
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                try:
                    deadline = conn.session.next_deadline()
                    if deadline is not None and deadline <= now:
                        conn.session.check_timeouts(now)
                        conn.handle_events()
                except Exception:
                    log.exception("heartbeat failed", extra={"sid": conn.sid})
