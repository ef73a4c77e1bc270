"""A minimal HTTP/1.1 client for webhook POSTs: pooled keep-alive connections, one write per
request, httptools parsing, the answer read up to a cap.

Why not httpx: its connection pool checks every pooled connection's socket on every request
(httpcore's `_assign_requests_to_connections`), which made it two thirds of the worker's CPU
at 32 connections per target. A webhook POST needs little of a general client: no redirects
(contract §6), no cookies, no proxies, no decompression, a small capped answer — so this
module does just that, with asyncio protocols.

The caller bounds the whole exchange with a timeout and chooses the address to connect to
(the one its SSRF check approved); `Host` and TLS SNI come from the URL.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import httptools
import httpx  # only for its URL normalisation (percent-encoding), once per URL

KEEPALIVE_S = 30.0  # an idle pooled connection older than this is closed, not reused


class HttpError(Exception):
    """The exchange failed: connection refused or reset, TLS failure, malformed answer."""


class _Unanswered(HttpError):
    """The connection closed before a byte of the answer came."""


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int
    body: bytes  # at most the cap


@dataclass(frozen=True, slots=True)
class _Route:
    scheme: str
    host_header: str
    target: bytes  # the request target: path and query, percent-encoded


def _route(url: str) -> _Route:
    parsed = httpx.URL(url)
    return _Route(parsed.scheme, parsed.netloc.decode("ascii"), parsed.raw_path or b"/")


class _Connection(asyncio.Protocol):
    def __init__(self, cap: int) -> None:
        self._cap = cap
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._complete = False
        self._answered = False
        self._waiter: asyncio.Future[Response] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headers_done:  # an answer delimited by the connection's end
                waiter.set_result(self._response())
            else:
                waiter.set_exception((HttpError if self._answered else _Unanswered)(
                    f"connection closed before an answer{f': {exc}' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed answer: {exc}"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if self._size < self._cap:
            self._body.append(body[:self._cap - self._size])
        self._size += len(body)
        if self._size >= self._cap:  # enough read: stop here, the connection can't be reused
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        self._finish(reusable=self._parser.should_keep_alive())

    # Requests
    async def request(self, data: bytes) -> Response:
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._body, self._size = [], 0
        self._headers_done = self._complete = self._answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            if not self._complete:  # failed, cancelled or timed out mid-answer
                self.close()

    def _response(self) -> Response:
        return Response(self._parser.get_status_code(), b"".join(self._body))

    def _finish(self, *, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self._complete = True
        self._waiter.set_result(self._response())
        if not reusable:
            self.close()
        self.idle_since = time.monotonic()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """POSTs over pooled connections; pooled per (scheme, address, port, host)."""

    def __init__(self, *, user_agent: str, response_cap: int) -> None:
        self._user_agent = user_agent
        self._cap = response_cap
        self._idle: dict[tuple[str, str, int, str], list[_Connection]] = {}
        self._routes: dict[str, _Route] = {}
        self._tls: ssl.SSLContext | None = None
        self._next_sweep = time.monotonic() + KEEPALIVE_S

    async def post(self, url: str, *, connect_host: str, port: int, sni_host: str,
                   headers: dict[str, str], body: bytes) -> Response:
        """POST `body` to `url`, connecting to `connect_host`:`port` (an address already
        checked, or the URL's host when any address is allowed)."""
        route = self._routes.get(url)
        if route is None:
            if len(self._routes) > 10_000:
                self._routes.clear()
            route = self._routes[url] = _route(url)
        head = [b"POST ", route.target, b" HTTP/1.1\r\nhost: ", route.host_header.encode(),
                b"\r\nuser-agent: ", self._user_agent.encode(),
                b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in headers.items():
            head += [name.encode(), b": ", value.encode(), b"\r\n"]
        data = b"".join(head) + b"\r\n" + body
        key = (route.scheme, connect_host, port, sni_host)
        connection = self._pooled(key)
        if connection is not None:
            try:
                return self._release(key, connection, await connection.request(data))
            except _Unanswered:
                pass  # the server closed a kept-alive connection as we reused it: once more, fresh
        connection = await self._connect(route.scheme, connect_host, port, sni_host)
        return self._release(key, connection, await connection.request(data))

    def _pooled(self, key: tuple[str, str, int, str]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE_S:
                return connection
            connection.close()
        return None

    def _release(self, key: tuple[str, str, int, str], connection: _Connection,
                 response: Response) -> Response:
        if not connection.closed:
            self._idle.setdefault(key, []).append(connection)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + KEEPALIVE_S
            self._sweep(now)
        return response

    def _sweep(self, now: float) -> None:
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and now - c.idle_since < KEEPALIVE_S]
            for connection in idle:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def _connect(self, scheme: str, host: str, port: int, sni_host: str) -> _Connection:
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = _tls_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(
                lambda: _Connection(self._cap), host, port, ssl=tls,
                server_hostname=sni_host if tls else None)
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"cannot connect to {host}:{port}: {exc}") from None
        return connection

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _tls_context() -> ssl.SSLContext:
    try:
        import certifi  # the CA bundle httpx used, so targets verify as before

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()

