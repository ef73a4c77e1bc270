"""HTTP connections that don't complete a request head in time are closed (issue 8, row 17),
and nothing else is: keep-alive clients, long polls and websockets live on.

The gateway here gets a 1 s head deadline (internal GATEWAY__HTTP_HEAD_TIMEOUT_S; 10 s by
default) so the test takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tests.support.api import Api
from tests.support.eio import (
    cookie,
    decode_v3_payload,
    handshake,
    login,
    open_polling,
    open_ws,
    polling_path,
    recv,
)
from tests.support.processes import GatewayProcess

HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def strict(start_gateway: Any) -> GatewayProcess:
    return start_gateway({"GATEWAY__HTTP_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S)})


@pytest.fixture(scope="module")
def strict_sid(strict: GatewayProcess) -> str:
    api = Api(strict.url)
    try:
        return login(api, api.create_user())
    finally:
        api.close()


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    return received


async def test_idle_and_half_sent_requests_are_closed_after_the_head_deadline(strict):
    partials = [b"", b"GET /api/v1/tok", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                b"POST /api/v1/auth HTTP/1.1\r\nContent-Length: 10\r\nX-Slow: a"]
    sockets = []
    for n in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
        writer.write(partials[n % len(partials)])
        await writer.drain()
        sockets.append((n % len(partials), reader, writer))
    opened = time.monotonic()
    answers = await asyncio.wait_for(
        asyncio.gather(*(_read_until_closed(reader) for _, reader, _ in sockets)),
        timeout=HEAD_TIMEOUT_S + 5)
    elapsed = time.monotonic() - opened
    assert elapsed >= HEAD_TIMEOUT_S * 0.8, elapsed  # not cut at once either
    for (kind, _, writer), answer in zip(sockets, answers):
        if kind == 0:  # nothing sent: closed without a word
            assert answer == b""
        else:  # part of a head: told why
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), answer
            assert json.loads(body)["code"] == "408"
        writer.close()


async def test_a_keep_alive_client_gets_a_fresh_deadline_for_every_request(strict):
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        for _ in range(3):  # 3 requests over ~1.8 s on one connection, a head deadline of 1 s
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert json.loads(await reader.readexactly(length)) == {"status": "ok"}
            await asyncio.sleep(0.6)
        # A head that takes its time but completes within the deadline is served too.
        for part in (b"GET /healthz HT", b"TP/1.1\r\nHost: gateway\r\n", b"\r\n"):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.3)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()


async def test_a_long_poll_and_a_websocket_outlive_the_head_deadline(strict, strict_sid):
    ws = await open_ws(strict.url, eio=3, headers=cookie(strict_sid))
    await handshake(ws, eio=3)
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        sid = await open_polling(http, "", cookie(strict_sid))
        poll = asyncio.create_task(http.get(polling_path(3, sid=sid), headers=cookie(strict_sid)))
        await asyncio.sleep(HEAD_TIMEOUT_S * 2)
        assert not poll.done()
        posted = await http.post(polling_path(3, sid=sid), content="1:2",
                                 headers={**cookie(strict_sid), "Content-Type": "text/plain"})
        assert posted.status_code == 200, posted.text
        answered = await asyncio.wait_for(poll, 5)
        assert answered.status_code == 200 and decode_v3_payload(answered.text) == ["3"]
    await ws.send("2")
    assert await recv(ws) == "3"
    assert ws.close_code is None
    await ws.close()
