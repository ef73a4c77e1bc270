"""The one ASGI middleware in front of every route: request ids, origin policy, metrics, logs.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or body copy per request, and it
sees websocket handshakes too, where the origin check matters most.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import logs
from gateway.api.errors import envelope
from gateway.api.origins import origin_allowed
from gateway.metrics import Metrics

log = logging.getLogger("gateway.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A decoded path with a control character names no route: Starlette's route patterns end in
# `$`, which matches before a final "\n", so `/api/v1/auth%0A` would reach the login route.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, allowed_origins: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = headers.get("x-request-id", "")
        if not _REQUEST_ID.fullmatch(rid):
            rid = secrets.token_hex(8)
        token = logs.request_id.set(rid)
        try:
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin, scope, headers):
                await self.refuse_origin(scope, receive, send, origin)
                return
            if _CONTROL.search(scope.get("path", "")):
                await envelope(400, "The path holds a control character: no route, store "
                                    "name or entity id does (names are matched whole)")(
                    scope, receive, send)
                return
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self.http(scope, receive, send, rid, origin, headers)
        finally:
            logs.request_id.reset(token)

    def origin_allowed(self, origin: str, scope: Scope, headers: Headers) -> bool:
        return origin_allowed(origin, headers.get("host", ""), self.allowed_origins)

    async def refuse_origin(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        log.info("origin refused", extra={"origin": origin, "path": scope.get("path")})
        response = envelope(403, f"Origin {origin} is not allowed (see GATEWAY_ALLOWED_ORIGINS)")
        if scope["type"] == "websocket":
            # Starlette sends a websocket.http.response when the server supports it, else 403.
            await response(scope, receive, send)
        else:
            self.metrics.http_requests.labels("origin", scope["method"], "403").inc()
            await response(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send, rid: str,
                   origin: str | None, headers: Headers) -> None:
        method = scope["method"]
        if origin is not None and method == "OPTIONS" and "access-control-request-method" in headers:
            await self.preflight(send, origin, headers)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra: list[tuple[bytes, bytes]] = [(b"x-request-id", rid.encode())]
                for name, value in state.get("response_headers", {}).items():
                    extra.append((name.lower().encode(), str(value).encode()))
                if origin is not None:
                    extra += [(b"access-control-allow-origin", origin.encode()),
                              (b"access-control-allow-credentials", b"true"),
                              (b"vary", b"Origin")]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.http_requests.labels(label, method, str(status)).inc()
            self.metrics.http_latency.labels(label).observe(elapsed)
            log.info("request", extra={
                "method": method, "path": scope["path"], "status": status,
                "ms": round(elapsed * 1000, 2), "client": (scope.get("client") or ("", 0))[0],
            })

    async def preflight(self, send: Send, origin: str, headers: Headers) -> None:
        allow_headers = headers.get("access-control-request-headers", "")
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", _CORS_METHODS.encode()),
            (b"access-control-allow-headers", allow_headers.encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]})
        await send({"type": "http.response.body", "body": b""})
