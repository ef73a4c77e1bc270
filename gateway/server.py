"""Running the process: Redis first (embedded or remote, with a clear error), then uvicorn."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

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
    uvicorn.Server(config).run()
    del embedded  # shut the embedded Redis down (with a final save) only after the server stops
    return 0


def run_worker(settings: Settings) -> int:
    url, embedded = _redis_url(settings)
    from gateway.hooks.worker import run_standalone

    asyncio.run(run_standalone(settings, url))
    del embedded
    return 0


