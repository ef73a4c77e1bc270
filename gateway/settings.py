"""Settings: one frozen dataclass per component, built once from ``GATEWAY_*`` variables.

Nothing reads the environment after start-up: ``Settings.from_env()`` is called by the CLI,
CLI flags are applied with ``dataclasses.replace``, and each component receives only its own
part as keyword arguments. A bad value raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gateway.exceptions import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""  # empty: start an embedded Redis under data_dir
    data_dir: Path = Path(".gateway")
    # Replicas that must have an entity write before it is acknowledged (Redis WAIT, 1 s at
    # most, else 503); 0: the master's acknowledgement is enough (docs/scaling.md, Sentinel).
    wait_replicas: int = 0


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Peers inside these networks may name the client address in X-Forwarded-For.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Browser origins allowed besides the gateway's own (scheme://host[:port]).
    allowed_origins: frozenset[str] = frozenset()
    max_body_bytes: int = 1024 * 1024  # contract §4: bodies over 1 MiB are 413
    workers: int = 1  # processes `gateway serve` runs on its one port (docs/scaling.md)


@dataclass(frozen=True)
class AuthSettings:
    session_ttl_s: int = 86400
    token_ttl_s: int = 86400
    api_token_ttl_s: int = 900  # GET /auth/token: fixed by the contract
    one_time_token_ttl_s: int = 900
    ban_attempts: int = 3
    ban_window_s: float = 10.0
    ban_s: float = 60.0
    admin_login: str = ""
    admin_password: str = ""


@dataclass(frozen=True)
class RateLimitSettings:
    per_second: int = 100
    per_minute: int = 1000


@dataclass(frozen=True)
class RealtimeSettings:
    ping_interval_ms: int = 25000
    ping_timeout_ms: int = 60000
    history_size: int = 1000  # events kept per store for `since` recovery
    max_subscriptions: int = 1000  # subscriptions one connection may hold at once


@dataclass(frozen=True)
class HookSettings:
    retry_schedule_s: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    timeout_s: float = 10.0
    allow_private: bool = False
    worker: str = "inline"  # "inline": serve delivers too; "off": only `gateway worker` does


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    hooks: HookSettings = field(default_factory=HookSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        port_default = env.get("PORT", int, 8000)
        return cls(
            redis=RedisSettings(
                url=env.get("GATEWAY_REDIS_URL", _redis_url, ""),
                data_dir=env.get("GATEWAY_DATA_DIR", Path, Path(".gateway")),
                wait_replicas=env.get("GATEWAY_REDIS_WAIT_REPLICAS", _count, 0),
            ),
            http=HttpSettings(
                host=env.get("GATEWAY_HOST", str, "127.0.0.1"),
                port=env.get("GATEWAY_PORT", _port, _port(str(port_default))),
                trusted_proxies=env.get("GATEWAY_TRUSTED_PROXIES", _networks, ()),
                allowed_origins=env.get("GATEWAY_ALLOWED_ORIGINS", _origins, frozenset()),
                workers=env.get("GATEWAY_WORKERS", _positive_int, 1),
            ),
            auth=AuthSettings(
                session_ttl_s=env.get("GATEWAY_SESSION_TTL_S", _positive_int, 86400),
                token_ttl_s=env.get("GATEWAY_TOKEN_TTL_S", _positive_int, 86400),
                ban_attempts=env.get("GATEWAY_AUTH_BAN_ATTEMPTS", _positive_int, 3),
                ban_window_s=env.get("GATEWAY_AUTH_BAN_WINDOW_S", _positive_float, 10.0),
                ban_s=env.get("GATEWAY_AUTH_BAN_S", _positive_float, 60.0),
                admin_login=env.get("GATEWAY_ADMIN_LOGIN", str, ""),
                admin_password=env.get("GATEWAY_ADMIN_PASSWORD", str, ""),
            ),
            ratelimit=RateLimitSettings(
                per_second=env.get("GATEWAY_RATE_LIMIT_PER_SECOND", _positive_int, 100),
                per_minute=env.get("GATEWAY_RATE_LIMIT_PER_MINUTE", _positive_int, 1000),
            ),
            realtime=RealtimeSettings(
                ping_interval_ms=env.get("GATEWAY_PING_INTERVAL_MS", _positive_int, 25000),
                ping_timeout_ms=env.get("GATEWAY_PING_TIMEOUT_MS", _positive_int, 60000),
                history_size=env.get("GATEWAY_HISTORY_SIZE", _positive_int, 1000),
                max_subscriptions=env.get("GATEWAY_REALTIME_MAX_SUBSCRIPTIONS", _positive_int,
                                          1000),
            ),
            hooks=HookSettings(
                retry_schedule_s=env.get(
                    "GATEWAY_HOOK_RETRY_SCHEDULE", _schedule, HookSettings.retry_schedule_s
                ),
                timeout_s=env.get("GATEWAY_HOOK_TIMEOUT_S", _positive_float, 10.0),
                allow_private=env.get("GATEWAY_HOOKS_ALLOW_PRIVATE", _flag, False),
                worker=env.get("GATEWAY_HOOKS_WORKER", _worker_mode, "inline"),
            ),
        )


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, cast: Callable[[str], T], default: T) -> T:
        raw = self._environ.get(name, "").strip()
        if raw == "":
            return default
        try:
            return cast(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name}={raw!r} is not valid: {exc}") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("expected a number above 0")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return value


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1 or 0")


def _worker_mode(raw: str) -> str:
    if raw not in ("inline", "off"):
        raise ValueError("expected 'inline' or 'off'")
    return raw


def _redis_url(raw: str) -> str:
    # the Sentinel form's own parts are checked where it is parsed (gateway.store.redis)
    if not raw.startswith(("redis://", "rediss://", "unix://",
                           "redis+sentinel://", "rediss+sentinel://")):
        raise ValueError("expected a redis://, rediss://, unix:// or redis+sentinel:// URL")
    return raw


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
    )


def _origins(raw: str) -> frozenset[str]:
    origins = set()
    for part in raw.split(","):
        origin = part.strip().rstrip("/").lower()
        if not origin:
            continue
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
            raise ValueError(f"{part.strip()!r} is not an origin like https://app.example.com")
        origins.add(origin)
    return frozenset(origins)


def _schedule(raw: str) -> tuple[float, ...]:
    delays = tuple(float(part) for part in raw.split(",") if part.strip())
    if any(not delay >= 0 for delay in delays):
        raise ValueError("delays must be numbers of seconds, 0 or more")
    return delays
