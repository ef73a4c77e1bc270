"""A webhook receiver for tests: a real HTTP server on loopback that records what it gets.

Per path, it can answer a sequence of status codes (the last one repeats), wait before
answering, or hang until the sink is closed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._statuses: dict[str, list[int]] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                path = self.path
                with sink._changed:  # recorded on arrival, before any delay
                    sink.requests.append(Received(
                        path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                    sink._changed.notify_all()
                delay = sink._delays.get(path, 0.0)
                if delay:
                    sink._closing.wait(delay)
                status = sink._next_status(path)
                payload = b'{"ok":true}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond(self, path: str, *statuses: int) -> None:
        """Answer `path` with these statuses in turn, the last one for ever after."""
        with self._lock:
            self._statuses[path] = list(statuses)

    def delay(self, path: str, seconds: float) -> None:
        """Wait this long before answering (a very long delay is a target that hangs)."""
        self._delays[path] = seconds

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
                self._changed.wait(left)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


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
