"""One delivery attempt over HTTP: limits, SSRF re-check with a pinned address, signing.

Connections are pooled by one gateway.hooks.http.HttpClient. Concurrency is bounded overall and per target
(host and port); a request waits for its target's slot *before* taking a global one, so a
target that hangs holds at most `per_host` slots and never starves the others. Each attempt is
bounded by the hook timeout (resolution, connect, request and response together), redirects are
not followed, and at most RESPONSE_CAP bytes of the answer are read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.hooks import signing
from gateway.hooks.http import HttpClient, HttpError
from gateway.hooks.resolver import resolve
from gateway.hooks.ssrf import TargetRefused, parse_target

RESPONSE_CAP = 4096  # bytes of a target's answer read
RESPONSE_KEPT = 1024  # characters of it kept in the delivery log


@dataclass(frozen=True, slots=True)
class Attempt:
    at: int  # ms since the epoch
    status_code: int | None
    error: str | None
    duration_ms: int
    response: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410

    def record(self) -> dict[str, Any]:
        return {"at": self.at, "statusCode": self.status_code, "error": self.error,
                "durationMs": self.duration_ms, "response": self.response}


class _Slot:
    __slots__ = ("semaphore", "users", "last_done")

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0
        self.last_done = time.monotonic()


def encode_body(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def target_key(url: str) -> str:
    try:
        target = parse_target(url)
    except TargetRefused:
        return url
    return f"{target.host}:{target.port}"


class Deliverer:
    def __init__(self, *, timeout_s: float, allow_private: bool, concurrency: int = 256,
                 per_host: int = 32) -> None:
        self.timeout_s = timeout_s
        self.per_host = per_host
        self._allow_private = allow_private
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, _Slot] = {}
        self._client = HttpClient(user_agent=f"gateway-webhooks/{__version__}",
                                  response_cap=RESPONSE_CAP)

    async def aclose(self) -> None:
        self._client.close()

    def stalled(self, url: str, *, backlog: int, for_s: float) -> bool:
        """True when at least `backlog` attempts for this URL's target are running or waiting
        here and none of them has finished for `for_s` seconds: a target that hangs."""
        slot = self._hosts.get(target_key(url))
        return (slot is not None and slot.users >= backlog
                and time.monotonic() - slot.last_done > for_s)

    async def attempt(self, *, url: str, secret: str, msg_id: str, body: bytes,
                      still_wanted: Callable[[], Awaitable[bool]]) -> Attempt | None:
        """POST the body, signed; None when `still_wanted` said no right before sending."""
        key = target_key(url)
        slot = self._hosts.get(key) or self._hosts.setdefault(key, _Slot(self.per_host))
        slot.users += 1
        try:
            async with slot.semaphore, self._global:
                return await self._attempt(url, secret, msg_id, body, still_wanted)
        finally:
            slot.users -= 1
            slot.last_done = time.monotonic()
            if slot.users == 0:
                self._hosts.pop(key, None)

    async def _attempt(self, url: str, secret: str, msg_id: str, body: bytes,
                       still_wanted: Callable[[], Awaitable[bool]]) -> Attempt | None:
        at = int(time.time() * 1000)
        started = time.monotonic()

        def done(status: int | None, error: str | None, response: str = "") -> Attempt:
            return Attempt(at, status, error, int((time.monotonic() - started) * 1000), response)

        try:
            async with asyncio.timeout(self.timeout_s):
                resolved = await resolve(parse_target(url), allow_private=self._allow_private)
                if not await still_wanted():
                    return None
                started = time.monotonic()
                target = resolved.target
                response = await self._client.post(
                    target.url, connect_host=str(resolved.address or target.host),
                    port=target.port, sni_host=target.host,
                    headers=signing.headers(secret, msg_id, int(time.time()), body), body=body)
        except TargetRefused as exc:
            return done(None, f"refused: {exc}")
        except TimeoutError:
            return done(None, f"timed out after {self.timeout_s:g} s")
        except HttpError as exc:
            return done(None, str(exc))
        status = response.status_code
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return done(status, error, response.body[:RESPONSE_KEPT].decode("utf-8", "replace"))
