"""uvicorn's httptools protocol with two things it lacks: a deadline for the request head, and
the bytes a client sends right behind an upgrade request.

**Request-head deadline.** uvicorn closes an idle keep-alive connection after
`timeout_keep_alive`, but it has no deadline for a request head: a client that connects and
sends nothing, or half a request line, holds its socket and a file descriptor for as long as it
likes (600 such sockets were all still open after 91 s). Here each request head must be complete
within `HEAD_TIMEOUT_S` of the connection opening, or of its own first byte on a keep-alive
connection; otherwise the connection is closed, with a 408 if part of a head had arrived. The
cost is one loop timer per connection and per request — armed when a head begins, cancelled when
it is complete — and no task.

**Upgrade.** httptools stops at the end of an upgrade request's head and uvicorn hands the
socket to the websocket protocol with the head only, dropping whatever followed it in the same
read (a client's first frame). Here those bytes are passed on.

**Workers** (`gateway serve --workers N`, `handoff.py`). A connection the parent handed over
may come with bytes another worker already read (`carried`): they are read first. And at the
start of each request, one naming another worker's Engine.IO session is handed to that worker
(`channel`, set per worker by `bind`), unless the parent said this is as far as it goes
(`final`).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.handoff import WorkerChannel

# GATEWAY__HTTP_HEAD_TIMEOUT_S (double underscore: internal, not a setting of the contract)
# lets tests shorten it.
HEAD_TIMEOUT_S = float(os.environ.get("GATEWAY__HTTP_HEAD_TIMEOUT_S") or 10)

_TIMEOUT_BODY = json.dumps({
    "success": False, "code": "408",
    "message": f"The request head was not complete within {HEAD_TIMEOUT_S:g} s",
    "tags": ["error_request_timeout"]}).encode()
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nconnection: close\r\n\r\n"
    + _TIMEOUT_BODY)


class GatewayHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection (uvicorn's `Config(http=...)`)."""

    channel: ClassVar[WorkerChannel | None] = None  # a worker's; see `bind`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some of a request head has arrived, not all of it
        self.carried = b""  # read by another process before this one adopted the connection
        self.final = False  # the parent could not route the carried request further

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()
        if self.carried:
            carried, self.carried = self.carried, b""
            self.data_received(carried)
        self.final = False

    @classmethod
    def bind(cls, channel: WorkerChannel) -> type[GatewayHttpProtocol]:
        """The protocol class of a worker of `gateway serve --workers N`."""
        return type("WorkerHttpProtocol", (cls,), {"channel": channel})

    def _between_requests(self) -> bool:
        cycle = self.cycle
        return not self._head_started and not self.pipeline and (
            cycle is None or (cycle.response_complete and not cycle.more_body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except that bytes after an upgrade request's head reach the websocket,
        and a request for another worker's session goes to that worker."""
        channel = self.channel
        if channel is not None and not self.final and self._between_requests() \
                and channel.hand_off(self.transport, data):
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade as upgrade:
            if not self._should_upgrade():
                self._unsupported_upgrade_warning()
                return
            self.handle_websocket_upgrade()
            offset = upgrade.args[0] if upgrade.args else len(data)
            rest = data[offset:]
            if rest and not self.transport.is_closing():
                self.transport.get_protocol().data_received(rest)  # type: ignore[attr-defined]

    # -- the request-head deadline -------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._head_timer is None:  # keep-alive: the deadline runs from this head's first byte
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._head_started = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head stalls behind a response still being made: don't cut that
            # response; the head gets its time again.
            self._arm_head_timer()
            return
        if self._head_started:
            transport.write(_TIMEOUT_RESPONSE)
        transport.close()
