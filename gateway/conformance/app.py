"""``create_app(settings)``: the two endpoints the suites talk to, and the timer sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from gateway.conformance.connections import EchoConnection, SocketIOConnection
from gateway.conformance.endpoint import EngineIOEndpoint
from gateway.conformance.registry import Registry
from gateway.protocol import Session, SessionConfig


@dataclass(frozen=True, slots=True)
class ConformanceSettings:
    """What the suites' reference servers are configured with (their READMEs).

    Attributes:
        ping_interval_ms: heartbeat interval, ms.
        ping_timeout_ms: heartbeat grace, ms.
        max_payload: bytes, advertised to ``EIO=4`` clients.
        connect_timeout_ms: Socket.IO: a session that joins no namespace is closed after it.
    """

    ping_interval_ms: int = 300
    ping_timeout_ms: int = 200
    max_payload: int = 1_000_000
    connect_timeout_ms: int = 1000


def create_app(settings: ConformanceSettings = ConformanceSettings()) -> Starlette:
    registry = Registry()
    base = SessionConfig(ping_interval_ms=settings.ping_interval_ms,
                         ping_timeout_ms=settings.ping_timeout_ms,
                         max_payload=settings.max_payload)
    engineio = EngineIOEndpoint(
        registry, replace(base, socketio=False),
        partial(EchoConnection, on_closed=registry.on_closed))
    connect_timeout = settings.connect_timeout_ms / 1000

    def socketio_connection(session: Session) -> SocketIOConnection:
        return SocketIOConnection(session, registry.on_closed, connect_timeout=connect_timeout)

    socketio = EngineIOEndpoint(
        registry, replace(base, namespaces=frozenset({"/", "/custom"})),
        socketio_connection)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            registry.close_all()

    return Starlette(
        routes=[Mount("/engine.io", app=engineio), Mount("/socket.io", app=socketio)],
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"])],
        lifespan=lifespan,
    )
