"""The websocket fast path: uvicorn hands us the upgraded socket, we frame Engine.IO ourselves.

Why not the ASGI websocket: through ASGI every message is a dict, a coroutine and a trip
through a websocket library that frames (and buffers) per connection, and each connection
holds a task or two. For a gateway whose job is writing one event to thousands of sockets,
that is most of the cost. Here a connection is one small protocol object with no task at all:

    data_received ─► FrameReader ─► Session.receive_data ─► Connection.handle_events ─► flush
    hub ─► Connection.push(broadcast) ─► transport.write(broadcast.ws_frame)   (framed once)

uvicorn creates this protocol for every websocket upgrade (`Config(ws=bind(app))`) and feeds
it the raw upgrade request. The handshake is authenticated and counted against the user's rate
limits here (`handshake.admit`, one short task, for Redis), and refused with the HTTP error
envelope before any Engine.IO packet, like the polling path; anything unexpected answers 500.
Bytes that arrive before the 101 is written (a client that sends its first frame with the
request, or while we wait for Redis) are held and read once the connection exists.
A client whose socket cannot drain (write buffer over `MAX_WRITE_BUFFER`) is cut off as a
slow consumer, so it can never grow the server's memory or delay anyone else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from redis.exceptions import RedisError
from starlette.requests import cookie_parser

from gateway.api.origins import origin_allowed
from gateway.auth.client_address import client_address
from gateway.exceptions import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    StoreUnavailable,
    Unavailable,
)
from gateway.protocol import State
from gateway.protocol import websocket as ws
from gateway.realtime.connection import Connection
from gateway.realtime.disconnect import SHUTDOWN
from gateway.realtime.handshake import admit

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from gateway.app import AppContext
    from gateway.realtime.hub import Broadcast

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 16 * 1024
MAX_EARLY_DATA = 64 * 1024  # bytes a client may send before the handshake is answered
INTERNAL_ERROR = 1011  # websocket close code (RFC 6455 §7.4.1)
MAX_MESSAGE = 1_000_000
MAX_WRITE_BUFFER = 4 * 1024 * 1024  # bytes waiting in the kernel's and uvloop's buffers
PATHS = ("/socket.io/", "/socket.io")


class FastWebSocket(asyncio.Protocol):
    """One upgraded connection; `app` is bound by `bind()`."""

    app: Starlette

    __slots__ = ("server_state", "transport", "head", "early", "reader", "conn", "upgrading",
                 "peer", "lost", "out")

    def __init__(self, config: Any, server_state: Any, app_state: Any,
                 _loop: Any = None) -> None:
        self.server_state = server_state
        self.transport: asyncio.Transport | None = None
        self.head: bytearray | None = bytearray()  # the request head, until it is complete
        self.early: bytearray | None = None  # then what came after it, until the 101 is sent
        self.reader: ws.FrameReader | None = None
        self.conn: Connection | None = None
        self.upgrading: Connection | None = None
        self.peer: str | None = None
        self.lost = False
        self.out: list[bytes] | None = None  # frames waiting for the coalescer

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None
        self.server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server_state.connections.discard(self)
        if self.upgrading is not None:
            self.upgrading.session.abort_upgrade()
            self.upgrading.handle_events()
            self.upgrading = None
        conn = self.conn
        if conn is not None:
            conn.session.transport_closed(error=exc is not None)
            conn.handle_events()

    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            if self.head is not None:
                self._receive_head(data)
            else:
                self._hold(data)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        assert self.reader is not None
        try:
            frames = self.reader.feed(data)
        except ws.WebSocketError as error:
            self._fail(error)
            return
        for frame in frames:
            if self.lost:
                return
            self._on_frame(frame)

    def shutdown(self) -> None:
        """uvicorn's shutdown; Realtime.close_all has normally dropped the connection already.

        As there, no close packet: the client should reconnect, to another process.
        """
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.close(SHUTDOWN)  # no packet: its flush closes the socket
        elif self.reader is None:
            self._refuse(Unavailable("The server is shutting down; reconnect to another"))
        else:
            self._close_socket(ws.GOING_AWAY)

    def pause_writing(self) -> None:  # flow control is by buffer size, see push()
        pass

    def resume_writing(self) -> None:
        pass

    # -- the connection's sink -----------------------------------------------------------
    def flush(self) -> None:
        """Write everything waiting, in order; after the close packet, close the socket."""
        conn = self.conn
        if conn is None or self.transport is None or self.lost:
            self.out = None
            return
        self._take_session_frames(conn)
        self.write_out()
        if conn.closed:
            self._close_socket(ws.GOING_AWAY if conn.close_reason == SHUTDOWN.reason
                               else ws.NORMAL_CLOSURE)

    def send_broadcast(self, broadcast: Broadcast) -> None:
        """Queue a broadcast's frame; the coalescer writes it once this burst is dispatched."""
        conn = self.conn
        if conn is None or self.lost:
            return
        if conn.session.has_data_to_send:
            self._take_session_frames(conn)  # keep order with acks and pings queued before it
        out = self.out
        if out is None:
            self.out = [broadcast.ws_frame]
            COALESCER.add(self)
        else:
            out.append(broadcast.ws_frame)

    def write_out(self) -> None:
        """One write for everything queued: a burst of events costs one syscall, not one each."""
        out, self.out = self.out, None
        transport = self.transport
        if not out or transport is None or self.lost:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER and self.conn is not None:
            self.conn.slow_consumer()
            transport.abort()  # drop what it could not take: that is the memory to give back

    def _take_session_frames(self, conn: Connection) -> None:
        frames = conn.session.data_to_send()
        conn.drained()
        if not frames:
            return
        encoded = [ws.text_frame(frame) if isinstance(frame, str)
                   else ws.encode_frame(ws.BINARY, frame) for frame in frames]
        if self.out is None:
            self.out = encoded
            COALESCER.add(self)
        else:
            self.out.extend(encoded)

    # -- handshake -----------------------------------------------------------------------
    def _receive_head(self, data: bytes) -> None:
        assert self.head is not None
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_REQUEST_HEAD:
                self._refuse_http(431, "Request header fields too large")
            return
        head, self.early = bytes(self.head[:end]), self.head[end + 4:]
        self.head = None
        try:
            target, headers = _parse_head(head)
            self._handshake(target, headers)
        except ApiError as error:
            self._refuse(error)
        except Exception:
            log.exception("websocket handshake failed", extra={"client": self.peer})
            self._refuse(ApiError())

    def _hold(self, data: bytes) -> None:
        """Data before the 101: kept for the connection (nothing is kept once refused)."""
        early = self.early
        if early is None:
            return
        early += data
        if len(early) > MAX_EARLY_DATA:
            self._refuse_http(400, "Too much data before the websocket handshake was answered")

    def _release_early(self) -> None:
        """The connection exists: read what the client sent before it did."""
        early, self.early = self.early, None
        if early and not self.lost:
            self._feed(bytes(early))

    def _handshake(self, target: str, headers: dict[str, str]) -> None:
        path, _, query_string = target.partition("?")
        if path not in PATHS:
            raise NotFound("No websocket endpoint here; Socket.IO is at /socket.io/")
        if headers.get("upgrade", "").lower() != "websocket" or \
                headers.get("sec-websocket-version") != "13" or \
                not ws.valid_client_key(headers.get("sec-websocket-key")):
            raise BadRequest("Not a valid WebSocket (version 13) upgrade request")
        ctx = self._ctx()
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, headers.get("host", ""),
                                                     ctx.settings.http.allowed_origins):
            raise Forbidden(f"Origin {origin} is not allowed (see GATEWAY_ALLOWED_ORIGINS)")
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        eio = query.get("EIO")
        if eio not in ("3", "4"):
            raise BadRequest("Unsupported protocol version: EIO must be 3 or 4")
        if query.get("transport") != "websocket":
            raise BadRequest("Bad transport for a websocket request")
        key = headers["sec-websocket-key"]
        sid = query.get("sid")
        if sid is not None:
            conn = ctx.realtime.get(sid)
            if conn is None or str(conn.eio) != eio or conn.transport != "polling" or \
                    conn.session.state is not State.POLLING:
                raise BadRequest("Session ID unknown, or not a polling session to upgrade")
            self._accept(key)
            self.upgrading = conn
            conn.session.start_upgrade(now=time.monotonic())
            ctx.realtime.upgrade_started(conn)
            self._release_early()
            return
        if not ctx.realtime.accepting:
            raise Unavailable("The server is shutting down; reconnect to another")
        address = client_address(self.peer, headers.get("x-forwarded-for"),
                                 ctx.settings.http.trusted_proxies)
        task = asyncio.get_running_loop().create_task(
            self._authenticate(ctx, eio, key, headers, address, query.get("token")))
        task.add_done_callback(_log_failure)

    async def _authenticate(self, ctx: AppContext, eio: str, key: str, headers: dict[str, str],
                            address: str, token: str | None) -> None:
        try:
            principal, decision = await admit(
                ctx, headers=headers, cookies=cookie_parser(headers.get("cookie", "")),
                address=address, query_token=token)
        except ApiError as error:
            if isinstance(error, RateLimited):
                log.info("realtime handshake rate limited", extra={"client": address})
            self._refuse(error)
            return
        except (RedisError, OSError, StoreUnavailable):
            self._refuse(Unavailable())
            return
        except Exception:
            log.exception("websocket handshake failed", extra={"client": address})
            self._refuse(ApiError())
            return
        if self.lost or self.transport is None or self.transport.is_closing():
            return
        if not ctx.realtime.accepting:  # shutdown began while we asked Redis
            self._refuse(Unavailable("The server is shutting down; reconnect to another"))
            return
        try:
            self._accept(key, decision.headers())
            conn = ctx.realtime.open(eio, principal, "websocket", sink=self)
            self.conn = conn
            log.info("realtime connected", extra={"sid": conn.sid, "user": principal.user_id,
                                                  "eio": eio, "transport": "websocket"})
            self.flush()
            self._release_early()
        except Exception:  # after the 101 no HTTP answer is possible: end the socket instead
            log.exception("websocket open failed", extra={"client": address})
            opened, self.conn = self.conn, None
            if opened is not None:
                opened.session.transport_closed(error=True)
                opened.handle_events()
            self._close_socket(INTERNAL_ERROR)

    def _accept(self, key: str, extra_headers: dict[str, str] | None = None) -> None:
        assert self.transport is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in (extra_headers or {}).items())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ws.accept_key(key).encode() + b"\r\n"
            + extra.encode("latin-1") + b"\r\n")
        self.reader = ws.FrameReader(max_message=MAX_MESSAGE)

    def _refuse(self, error: ApiError) -> None:
        body = json.dumps({"success": False, "code": str(error.status), "message": error.message,
                           "tags": list(error.tags)}).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in error.headers.items())
        self._write_http(error.status, body, extra)

    def _refuse_http(self, status: int, message: str) -> None:
        body = json.dumps({"success": False, "code": str(status), "message": message,
                           "tags": ["error_bad_request"]}).encode()
        self._write_http(status, body, "")

    def _write_http(self, status: int, body: bytes, extra_headers: str) -> None:
        self.head = self.early = None  # whatever else the client sends is ignored
        if self.transport is None or self.lost or self.transport.is_closing():
            return
        phrase = HTTPStatus(status).phrase
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra_headers}connection: close\r\n\r\n".encode()
            + body)
        self.transport.close()

    # -- frames --------------------------------------------------------------------------
    def _on_frame(self, frame: ws.Frame) -> None:
        opcode = frame.opcode
        if opcode == ws.TEXT or opcode == ws.BINARY:
            data: str | bytes = frame.payload.decode("utf-8") if opcode == ws.TEXT else frame.payload
            if self.upgrading is not None:
                self._on_upgrade_frame(self.upgrading, data)
            elif self.conn is not None:
                self.conn.session.receive_data(data, now=time.monotonic())
                self.conn.handle_events()
        elif opcode == ws.PING:
            assert self.transport is not None
            self.transport.write(ws.encode_frame(ws.PONG, frame.payload))
        elif opcode == ws.CLOSE:
            conn, self.conn = self.conn, None
            if conn is not None:
                conn.session.transport_closed()
                conn.handle_events()
            self._close_socket(ws.NORMAL_CLOSURE)

    def _on_upgrade_frame(self, conn: Connection, data: str | bytes) -> None:
        assert self.transport is not None
        replies = conn.session.receive_upgrade_data(data, now=time.monotonic())
        if replies:
            self.transport.write(b"".join(ws.text_frame(r) if isinstance(r, str)
                                          else ws.encode_frame(ws.BINARY, r) for r in replies))
        state = conn.session.state
        if state is State.WEBSOCKET:
            self.upgrading = None
            self.conn = conn
            conn.attach_sink(self)  # the pending GET returns its noop; we carry it from here
        elif state is not State.PROBING:
            self.upgrading = None
            self._close_socket(ws.NORMAL_CLOSURE)
        conn.handle_events()

    def _fail(self, error: ws.WebSocketError) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.session.transport_closed(error=True)
            conn.handle_events()
        self._close_socket(error.code)

    def _close_socket(self, code: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ws.close_frame(code))
            self.transport.close()

    def _ctx(self) -> AppContext:
        ctx = getattr(self.app.state, "ctx", None)
        if ctx is None:
            raise Unavailable("The gateway is still starting")
        return ctx  # type: ignore[no-any-return]


class Coalescer:
    """Writes every socket that got frames during this turn of the event loop, once.

    The hub dispatches a burst of events (everything Redis delivered at once) without
    yielding; each connection's frames accumulate and are written together right after, so
    under load the number of syscalls falls with the burst size while an idle gateway still
    writes each event at once.
    """

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[FastWebSocket] = []
        self._scheduled = False

    def add(self, sink: FastWebSocket) -> None:
        self._dirty.append(sink)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_all)

    def write_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for sink in dirty:
            try:
                sink.write_out()
            except Exception:
                log.exception("websocket write failed")


COALESCER = Coalescer()


def bind(app: Starlette) -> type[FastWebSocket]:
    """The protocol class uvicorn should use for websocket upgrades to this app."""
    return type("GatewayWebSocket", (FastWebSocket,), {"app": app, "__slots__": ()})


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET":
        raise BadRequest("A websocket upgrade is a GET")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("Malformed request header")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers and name != "cookie" \
            else (f"{headers[name]}; {value}" if name in headers else value)
    return parts[1], headers


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("websocket handshake failed", exc_info=task.exception())
