"""Running the process: Redis first (embedded or remote, with a clear error), then uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
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
    """uvicorn, with realtime clients told goodbye before their sockets are cut.

    On SIGTERM uvicorn stops listening, then closes websockets with code 1012 and drops
    pending polls. We first stop accepting and send every Socket.IO client its disconnect and
    close packets, so clients see a clean "server namespace disconnect" and don't count it as
    a network failure.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        ctx = getattr(self._app.state, "ctx", None)
        if ctx is not None:
            await ctx.realtime.close_all("server shutting down", grace_s=3.0)
        await super().shutdown(sockets)


def serve(settings: Settings) -> int:
    url, embedded = _redis_url(settings)
    app = create_app(settings, url)
    config = uvicorn.Config(
        app, host=settings.http.host, port=settings.http.port, loop="uvloop", http="httptools",
        lifespan="on", log_config=None, access_log=False, proxy_headers=False,
        timeout_graceful_shutdown=10, ws_max_size=1024 * 1024,
    )
    log.info("gateway serving", extra={"host": settings.http.host, "port": settings.http.port,
                                       "redis": redact(url), "embedded_redis": embedded is not None,
                                       "hooks_worker": settings.hooks.worker})
    GatewayServer(config, app).run()
    del embedded  # shut the embedded Redis down (with a final save) only after the server stops
    return 0


def run_worker(settings: Settings) -> int:
    url, embedded = _redis_url(settings)
    from gateway.hooks.worker import run_standalone

    asyncio.run(run_standalone(settings, url))
    del embedded
    return 0


