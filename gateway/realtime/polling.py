"""The HTTP long-polling transport: GET waits for queued packets, POST delivers the client's."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.api.body import read_body
from gateway.exceptions import BadRequest
from gateway.protocol import ProtocolError, State
from gateway.protocol.jsonp import decode_form as jsonp_decode
from gateway.protocol.jsonp import encode_response as jsonp_encode
from gateway.realtime.connection import Connection

MAX_POST_BYTES = 1_000_000  # the maxPayload we advertise


def _payload_response(conn: Connection, request: Request) -> Response:
    jsonp_index = request.query_params.get("j")
    binary_ok = jsonp_index is None and request.query_params.get("b64") not in ("1", "true")
    payload = conn.session.payload_to_send(binary_ok=binary_ok)
    conn.drained()
    if payload is None:
        payload = ""
    if jsonp_index is not None:
        assert isinstance(payload, str)
        return Response(jsonp_encode(payload, jsonp_index),
                        media_type="text/javascript; charset=UTF-8")
    if isinstance(payload, bytes):
        return Response(payload, media_type="application/octet-stream")
    return Response(payload, media_type="text/plain; charset=UTF-8")


def first_response(conn: Connection, request: Request) -> Response:
    """The handshake's answer: the open packet (and, for EIO=3, `40`)."""
    return _payload_response(conn, request)


async def get(conn: Connection, request: Request) -> Response:
    if conn.polling:
        # Two GETs at once is a broken client; engine.io closes the session for it.
        conn.close("transport error")
        raise BadRequest("Overlapping long-poll requests for one session")
    if conn.session.state is State.WEBSOCKET:
        raise BadRequest("This session has upgraded to websocket; polling is over")
    conn.polling = True
    try:
        disconnected = asyncio.ensure_future(_client_gone(request))
        try:
            while not conn.session.has_data_to_send and not conn.session.closed:
                conn.wake.clear()
                waiter = asyncio.ensure_future(conn.wake.wait())
                done, _ = await asyncio.wait({waiter, disconnected},
                                             return_when=asyncio.FIRST_COMPLETED)
                if disconnected in done:
                    waiter.cancel()
                    conn.session.transport_closed()
                    conn.handle_events()
                    return Response(status_code=499)
        finally:
            disconnected.cancel()
        return _payload_response(conn, request)
    finally:
        conn.polling = False


async def _client_gone(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def post(conn: Connection, request: Request) -> Response:
    body = await read_body(request, MAX_POST_BYTES)
    data: str | bytes = body
    if request.query_params.get("j") is not None:
        try:
            data = jsonp_decode(body)
        except ProtocolError:
            conn.close("parse error")
            raise BadRequest("Malformed JSONP body") from None
    elif not request.headers.get("content-type", "").startswith("application/octet-stream"):
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            conn.close("parse error")
            raise BadRequest("Polling body is not UTF-8 text") from None
    conn.session.receive_payload(data, now=time.monotonic())
    conn.handle_events()
    if conn.closed and conn.close_reason == "parse error":
        raise BadRequest("Malformed Engine.IO payload; the session is closed")
    return PlainTextResponse("ok")
