"""/socket.io/: the handshake (version, transport, credentials), then hand-off to a transport.

The handshake is authenticated and counted against the user's rate limits (`handshake.admit`)
before any Engine.IO packet exists: no or bad credentials get HTTP 401, a user over the limit
429, with the error envelope on both transports (for websockets through the ASGI
denial-response extension), so a client never sees an open packet it may not use. Anything
unexpected answers 500 with the envelope, logged with the error.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.api.deps import address_of, context
from gateway.api.errors import envelope, render
from gateway.auth.principal import Principal
from gateway.exceptions import ApiError, BadRequest, StoreUnavailable, Unavailable
from gateway.ratelimit import Decision
from gateway.realtime import polling, websocket
from gateway.realtime.connection import Connection
from gateway.realtime.handshake import admit
from gateway.realtime.service import Realtime

log = logging.getLogger(__name__)

EIO_VERSIONS = ("3", "4")


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


class SocketIOEndpoint:
    """The ASGI app mounted at /socket.io/."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, tracking_send)
            else:
                await self._http(scope, receive, tracking_send)
        except ApiError as error:
            if not answered:
                await self._refuse(scope, receive, send, render(error))
        except (RedisConnectionError, RedisTimeoutError, StoreUnavailable, OSError):
            if not answered:
                await self._refuse(scope, receive, send, render(Unavailable()))
        except Exception:
            query = {k: v for k, v in _query(scope).items() if k != "token"}  # a secret
            log.exception("realtime request failed", extra={"path": scope.get("path"),
                                                             "query": query})
            if not answered:
                await self._refuse(scope, receive, send, render(ApiError()))

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                await response(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
        else:
            await response(scope, receive, send)

    @staticmethod
    def _realtime(scope: Scope) -> Realtime:
        return scope["app"].state.ctx.realtime  # type: ignore[no-any-return]

    @staticmethod
    def _check(query: dict[str, str], transport: str) -> str:
        eio = query.get("EIO")
        if eio not in EIO_VERSIONS:
            raise BadRequest("Unsupported protocol version: EIO must be 3 or 4")
        if query.get("transport") != transport:
            raise BadRequest(f"Bad transport {query.get('transport')!r} for this request")
        return eio

    async def _authenticate(self, request: HTTPConnection,
                            query: dict[str, str]) -> tuple[Principal, Decision]:
        return await admit(context(request), headers=request.headers, cookies=request.cookies,
                           address=address_of(request), query_token=query.get("token"))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        realtime = self._realtime(scope)
        query = _query(scope)
        eio = self._check(query, "polling")
        sid = query.get("sid")
        conn: Connection | None
        if sid is None:
            if request.method != "GET":
                raise BadRequest("A new session starts with GET")
            if not realtime.accepting:
                raise Unavailable("The server is shutting down; reconnect to another")
            principal, decision = await self._authenticate(request, query)
            conn = realtime.open(eio, principal, "polling")
            log.info("realtime connected", extra={"sid": conn.sid, "user": principal.user_id,
                                                  "eio": eio, "transport": "polling"})
            response: Response = polling.first_response(conn, request)
            response.headers.update(decision.headers())
        else:
            conn = realtime.get(sid)
            if conn is None or str(conn.eio) != eio:
                raise BadRequest("Session ID unknown")
            if request.method == "GET":
                response = await polling.get(conn, request)
            elif request.method == "POST":
                response = await polling.post(conn, request)
            else:
                response = envelope(405, "Use GET or POST", ("error_method_not_allowed",))
        await response(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        realtime = self._realtime(scope)
        query = _query(scope)
        eio = self._check(query, "websocket")
        sid = query.get("sid")
        if sid is not None:
            found = realtime.get(sid)
            if found is None or str(found.eio) != eio or found.transport != "polling":
                raise BadRequest("Session ID unknown, or not a polling session to upgrade")
            await ws.accept()
            await websocket.upgrade(found, receive, send,
                                    on_start=lambda: realtime.upgrade_started(found))
            return
        if not realtime.accepting:
            raise Unavailable("The server is shutting down; reconnect to another")
        principal, decision = await self._authenticate(ws, query)
        await ws.accept(headers=[(name.lower().encode(), value.encode())
                                 for name, value in decision.headers().items()])
        conn = realtime.open(eio, principal, "websocket")
        log.info("realtime connected", extra={"sid": conn.sid, "user": principal.user_id,
                                              "eio": eio, "transport": "websocket"})
        await websocket.pump(conn, receive, send)
