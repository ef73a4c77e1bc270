"""The HTTP long-polling transport: GET waits for queued packets, POST delivers the client's."""

from __future__ import annotations

import asyncio
import time
import weakref

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.api.body import read_body
from gateway.exceptions import BadRequest
from gateway.protocol import ProtocolError, State
from gateway.protocol.jsonp import decode_form as jsonp_decode
from gateway.protocol.jsonp import encode_response as jsonp_encode
from gateway.realtime.carrier import Carrier
from gateway.realtime.disconnect import PARSE_ERROR, TRANSPORT_ERROR

MAX_POST_BYTES = 1_000_000  # the maxPayload we advertise
UPGRADE_SETTLE_S = 0.1  # node's engine.io sends an upgrading session's noop every 100 ms

# Sessions whose handshake asked for b64=1: EIO=3 clients send it on the handshake only, and
# every later response must be text too (node's polling transport keeps `supportsBinary`).
_BASE64_ONLY: weakref.WeakSet[Carrier] = weakref.WeakSet()


def _payload_response(conn: Carrier, request: Request) -> Response:
    jsonp_index = request.query_params.get("j")
    binary_ok = (jsonp_index is None and conn not in _BASE64_ONLY
                 and request.query_params.get("b64") not in ("1", "true"))
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


def first_response(conn: Carrier, request: Request) -> Response:
    """The handshake's answer: the open packet (and, for EIO=3, `40`)."""
    if request.query_params.get("b64") in ("1", "true"):
        _BASE64_ONLY.add(conn)
    return _payload_response(conn, request)


async def get(conn: Carrier, request: Request) -> Response:
    if conn.polling:
        # Two GETs at once is a broken client; engine.io closes the session for it.
        conn.close(TRANSPORT_ERROR)
        raise BadRequest("Overlapping long-poll requests for one session")
    if conn.session.state is State.PROBING:
        await _upgrade_settled(conn)
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


async def _upgrade_settled(conn: Carrier) -> None:
    """A GET that starts after the probe may have raced the client's `5` on the websocket:
    wait for the upgrade to finish (then this GET is refused) for as long as node's server
    waits before answering such a GET with a noop."""
    deadline = time.monotonic() + UPGRADE_SETTLE_S
    while conn.session.state is State.PROBING and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def _client_gone(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def post(conn: Carrier, request: Request) -> Response:
    body = await read_body(request, MAX_POST_BYTES)
    data: str | bytes = body
    if request.query_params.get("j") is not None:
        try:
            data = jsonp_decode(body)
        except ProtocolError:
            conn.close(PARSE_ERROR)
            raise BadRequest("Malformed JSONP body") from None
    elif not request.headers.get("content-type", "").startswith("application/octet-stream"):
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            conn.close(PARSE_ERROR)
            raise BadRequest("Polling body is not UTF-8 text") from None
    conn.session.receive_payload(data, now=time.monotonic())
    conn.handle_events()
    if conn.closed and conn.close_reason == "parse error":
        raise BadRequest("Malformed Engine.IO payload; the session is closed")
    return PlainTextResponse("ok")
