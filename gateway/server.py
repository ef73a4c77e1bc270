"""Running the process: Redis first (embedded or remote, with a clear error), then uvicorn."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn
import uvloop
from uvicorn.config import STARTUP_FAILURE
from starlette.applications import Starlette

from gateway.app import AppContext, create_app
from gateway.handoff import WorkerChannel
from gateway.http_protocol import GatewayHttpProtocol
from gateway.realtime.disconnect import SHUTDOWN
from gateway.realtime.fastws import bind as bind_websocket
from gateway.settings import Settings
from gateway.store.redis import EmbeddedRedis, connect, redact

log = logging.getLogger("gateway")


def _redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """Check Redis before anything listens; the embedded server lives as long as this process."""

    async def check() -> tuple[str, EmbeddedRedis | None]:
        client, embedded = await connect(settings.redis)
        await client.aclose()
        return (embedded.url if embedded else settings.redis.url), embedded

    return asyncio.run(check())


class GatewayServer(uvicorn.Server):
    """uvicorn, with realtime connections ended the way a deploy needs (contract §5).

    On SIGTERM we stop listening, then end every realtime connection at the Engine.IO level
    (`Realtime.close_all(SHUTDOWN)`): websockets close with 1001 (going away), pending polls
    return a noop, and no Socket.IO `41` nor Engine.IO `1` is sent — socket.io clients take
    either as the server's wish that they stay away, while a lost connection is one they
    reconnect from by themselves, to whichever process serves next. Then uvicorn's own
    shutdown finishes the HTTP requests in flight and runs the app's lifespan shutdown.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette,
                 channel: WorkerChannel | None = None,
                 protocol_class: type[GatewayHttpProtocol] = GatewayHttpProtocol) -> None:
        super().__init__(config)
        self._app = app
        self._channel = channel  # a worker of `--workers N`: connections come from the parent
        self._protocol_class = protocol_class

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        channel = self._channel
        if channel is None:
            await super().startup(sockets)
            return
        # uvicorn's startup, with connections adopted from the parent instead of a listener.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        loop = asyncio.get_running_loop()

        protocol_class = self._protocol_class

        def create_protocol() -> GatewayHttpProtocol:
            return protocol_class(
                config=config, server_state=self.server_state, app_state=self.lifespan.state,
                _loop=loop)

        self.servers = []
        channel.start(create_protocol, on_parent_gone=self._parent_gone)
        self.started = True

    def _parent_gone(self) -> None:
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._channel is not None:
            self._channel.stop()
        for server in self.servers:
            server.close()
        ctx: AppContext | None = getattr(self._app.state, "ctx", None)
        if ctx is not None:
            await ctx.realtime.close_all(SHUTDOWN, grace_s=3.0)
        await super().shutdown(sockets)


def _config(settings: Settings, app: Starlette,
            http: type[GatewayHttpProtocol] = GatewayHttpProtocol) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.http.host, port=settings.http.port, loop="uvloop",
        http=http, lifespan="on", log_config=None, ws=bind_websocket(app),
        access_log=False, proxy_headers=False,
        timeout_graceful_shutdown=10, ws_max_size=1024 * 1024,
    )


def serve(settings: Settings, log_level: str = "INFO") -> int:
    url, embedded = _redis_url(settings)
    if settings.http.workers > 1:
        from gateway.workers import Supervisor

        try:
            return Supervisor(settings, url, log_level=log_level,
                              embedded=embedded is not None).run()
        finally:
            if embedded is not None:
                embedded.close()
    app = create_app(settings, url)
    config = _config(settings, app)
    log.info("gateway serving", extra={"host": settings.http.host, "port": settings.http.port,
                                       "redis": redact(url), "embedded_redis": embedded is not None,
                                       "hooks_worker": settings.hooks.worker})
    try:
        _run_until_stopped(GatewayServer(config, app))
    finally:
        # Only after the server has stopped: the embedded Redis saves and exits last.
        if embedded is not None:
            embedded.close()
    return 0


def serve_worker(settings: Settings, url: str, channel: WorkerChannel) -> int:
    """One of the processes of `gateway serve --workers N` (see gateway/workers.py)."""
    app = create_app(settings, url)
    protocol_class = GatewayHttpProtocol.bind(channel)
    config = _config(settings, app, http=protocol_class)
    _run_until_stopped(GatewayServer(config, app, channel=channel, protocol_class=protocol_class))
    return 0


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    pass


def _run_until_stopped(server: uvicorn.Server) -> None:
    """Run uvicorn; a SIGTERM or SIGINT ends it gracefully and returns here.

    After a graceful shutdown uvicorn restores the signal handlers it found and raises the
    signal again. With the default handlers that kills the process on the spot, before the
    embedded redis-server is saved and stopped (it was left running, orphaned). Installing
    no-op handlers first makes that re-raise harmless: we return, clean up, and exit 0.
    """
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, _ignore_signal) for signum in handled}
    try:
        server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_worker(settings: Settings) -> int:
    url, embedded = _redis_url(settings)
    from gateway.hooks.worker import run_standalone

    try:
        uvloop.run(run_standalone(settings, url))  # same loop as `serve`: cheaper socket writes
    finally:
        if embedded is not None:
            embedded.close()
    return 0


