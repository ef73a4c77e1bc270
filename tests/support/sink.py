"""A webhook receiver for tests: a real HTTP server on loopback that records what it gets.

Per path, it can answer a sequence of status codes (the last one repeats), wait before
answering, or hang until the sink is closed.

It is an asyncio server (httptools parsing, keep-alive) on an event loop in a thread of its
own, so it answers thousands of requests a second and is never the bottleneck of a delivery
benchmark; tests read what it recorded from their own thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

_PAYLOAD = b'{"ok":true}'
_REASONS = {200: b"OK", 204: b"No Content", 410: b"Gone", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parse requests, record each on arrival, answer in order."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._previous: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._sink._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.decode("latin-1")
        self._sink._record(Received(path, self._headers, b"".join(self._body), time.time()))
        keep_alive = self._parser.should_keep_alive()
        self._previous = asyncio.get_running_loop().create_task(
            self._answer(path, keep_alive, self._previous))

    async def _answer(self, path: str, keep_alive: bool,
                      previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # answers go out in request order
        delay = self._sink._delays.get(path, 0.0)
        if delay:
            try:
                await asyncio.wait_for(self._sink._closing.wait(), delay)
            except TimeoutError:
                pass
        if self._transport is None or self._transport.is_closing():
            return  # the client gave up (timeout)
        status = self._sink._next_status(path)
        self._transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, _REASONS.get(status, b"Status"), len(_PAYLOAD),
               b"" if keep_alive else b"connection: close\r\n", _PAYLOAD))
        if not keep_alive:
            self._transport.close()


class Sink:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._statuses: dict[str, list[int]] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._closing = asyncio.Event()
        started = threading.Event()
        self._server: asyncio.Server | None = None

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(self._loop.create_server(
                lambda: _Connection(self), "127.0.0.1", 0, backlog=1024))
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="sink", daemon=True)
        self._thread.start()
        started.wait(10)
        assert self._server is not None
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def respond(self, path: str, *statuses: int) -> None:
        """Answer `path` with these statuses in turn, the last one for ever after."""
        with self._lock:
            self._statuses[path] = list(statuses)

    def delay(self, path: str, seconds: float) -> None:
        """Wait this long before answering (a very long delay is a target that hangs)."""
        self._delays[path] = seconds

    def _record(self, received: Received) -> None:
        with self._changed:  # recorded on arrival, before any delay
            self.requests.append(received)
            self._changed.notify_all()

    def _next_status(self, path: str) -> int:
        with self._lock:
            queue = self._statuses.get(path)
            if not queue:
                return 200
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0,
                 where: Callable[[Received], bool] = lambda r: True) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.requests
                         if (path is None or r.path == path) and where(r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"sink got {len(found)} of {count} requests on {path}")
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        async def shut() -> None:
            self._closing.set()  # hanging answers return now, to closed connections
            assert self._server is not None
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            answers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if answers:
                await asyncio.wait(answers, timeout=2)

        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def signature_valid(secret: str, received: Received) -> bool:
    """Check a delivery the way a receiver would (Standard Webhooks), with no gateway code."""
    import base64
    import hashlib
    import hmac

    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    signed = f"{msg_id}.{timestamp}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in received.headers["webhook-signature"].split()
             if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, sig) for sig in given)
