"""One Engine.IO endpoint (``/engine.io/`` or ``/socket.io/``): handshake checks, then hand-off.

Bad requests get HTTP 400 with engine.io's error body (``{"code":…,"message":…}``, the codes of
node's ``Server.errorMessages``); a refused websocket gets the same 400 through the ASGI
denial-response extension, or a close before accept where the server lacks it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Callable
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from gateway.conformance.connections import ConformanceConnection
from gateway.conformance.registry import Registry
from gateway.exceptions import ApiError
from gateway.protocol import Session, SessionConfig, State, dialect_for
from gateway.realtime import polling, websocket

UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
UNSUPPORTED_PROTOCOL_VERSION = 5

# node's engine.io writes what was queued during a write only once that write completes, so
# two packets emitted one after the other (the CONNECT reply, then "auth") reach the client in
# separate reads. The suites' clients rely on it: ws 8.5 emits every message of one read at
# once (and the first one together with "open"), and a message emitted before the test's next
# `waitFor` listener exists is lost. So each frame, and the handshake, is followed by a pause.
FRAME_GAP_S = 0.005

MakeConnection = Callable[[Session], ConformanceConnection]


def _paced(send: Send) -> Send:
    async def paced_send(message: Message) -> None:
        await send(message)
        if message["type"] in ("websocket.send", "websocket.accept"):
            await asyncio.sleep(FRAME_GAP_S)

    return paced_send


class Refused(Exception):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> Response:
        return JSONResponse({"code": self.code, "message": self.message},
                            status_code=self.status)


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


class EngineIOEndpoint:
    """The ASGI app for one path; ``make_connection`` picks the behaviour."""

    def __init__(self, registry: Registry, config: SessionConfig,
                 make_connection: MakeConnection) -> None:
        self._registry = registry
        self._config = config
        self._make_connection = make_connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        except ApiError as error:  # raised by gateway.realtime.polling
            await self._refuse(scope, receive, send,
                               Refused(BAD_REQUEST, error.message, error.status))
        except Refused as refusal:
            await self._refuse(scope, receive, send, refusal)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refused) -> None:
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
                "extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        await refusal.response()(scope, receive, send)

    @staticmethod
    def _check(query: dict[str, str], transport: str) -> str:
        eio = query.get("EIO")
        if eio not in ("3", "4"):
            raise Refused(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
        if query.get("transport") != transport:
            raise Refused(UNKNOWN_TRANSPORT, "Transport unknown")
        return eio

    def _open(self, eio: str, transport: str) -> ConformanceConnection:
        session = Session(dialect_for(eio), secrets.token_urlsafe(15), transport=transport,
                          now=time.monotonic(), config=self._config)
        conn = self._make_connection(session)
        self._registry.add(conn)
        return conn

    def _existing(self, query: dict[str, str], eio: str, *,
                  for_poll: bool = False) -> ConformanceConnection:
        conn = self._registry.get(query["sid"], for_poll=for_poll)
        if conn is None or str(conn.session.dialect.eio) != eio:
            raise Refused(UNKNOWN_SID, "Session ID unknown")
        return conn

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        query = _query(scope)
        eio = self._check(query, "polling")
        response: Response
        if "sid" not in query:
            if request.method != "GET":
                raise Refused(BAD_HANDSHAKE_METHOD, "Bad handshake method")
            response = polling.first_response(self._open(eio, "polling"), request)
        elif request.method == "GET":
            response = await polling.get(self._existing(query, eio, for_poll=True), request)
        elif request.method == "POST":
            response = await polling.post(self._existing(query, eio), request)
        else:
            raise Refused(BAD_REQUEST, "Bad request")
        await response(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        query = _query(scope)
        eio = self._check(query, "websocket")
        if "sid" in query:
            conn = self._existing(query, eio)
            await send({"type": "websocket.accept"})  # unpaced: the client speaks first
            if conn.session.state is State.POLLING:
                await websocket.upgrade(conn, receive, _paced(send))
            else:  # upgraded or upgrading already: node accepts, then closes this one
                await send({"type": "websocket.close", "code": 1000})
            return
        send = _paced(send)
        await send({"type": "websocket.accept"})
        await websocket.pump(self._open(eio, "websocket"), receive, send)
