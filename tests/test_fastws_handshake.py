"""The websocket fast path's handshake (`gateway/realtime/fastws.py`) on raw sockets: frames a
client sends before the 101 — in the same packet as the request, or while the handshake is
still being authenticated — are read, not dropped or fatal; and every handshake gets an HTTP
answer and a close, whatever it sends (an unexpected error answers 500), never a hang.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

import httpx
import pytest

from tests.support.eio import cookie, open_polling, query


def _upgrade_request(port: int, path_and_query: str, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET " + path_and_query.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:"
            + str(port).encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    return (bytes([0x81, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _read_frames(sock: socket.socket, wanted: int) -> tuple[bytes, list[str]]:
    """The 101 head, then `wanted` unmasked server text frames."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    frames: list[str] = []
    while len(frames) < wanted:
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
            chunk = sock.recv(4096)
            assert chunk, (head, frames, rest)
            rest += chunk
        length = rest[1] & 0x7F
        if length == 126:
            while len(rest) < 4:
                rest += sock.recv(4096)
            length = struct.unpack("!H", rest[2:4])[0]
            start = 4
        else:
            start = 2
        while len(rest) < start + length:
            rest += sock.recv(4096)
        frames.append(rest[start:start + length].decode())
        rest = rest[start + length:]
    return head, frames


@pytest.mark.parametrize("together", [True, False], ids=["same-packet", "right-after"])
def test_a_frame_sent_before_the_101_is_read(gateway, user, together):
    request = _upgrade_request(gateway.port, "/socket.io/?" + query(3, "websocket"),
                               f"Cookie: sid={user['sid']}\r\n".encode())
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        if together:
            sock.sendall(request + _masked_text("2early"))
        else:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            sock.sendall(_masked_text("2early"))  # while the server still asks Redis
        head, frames = _read_frames(sock, 3)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert frames[0].startswith("0{") and frames[1:] == ["40", "3early"], frames


async def test_a_probe_sent_with_the_upgrade_request_is_answered(gateway, user):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:
        sid = await open_polling(http, "", cookie(user["sid"]))
    request = _upgrade_request(gateway.port, "/socket.io/?" + query(3, "websocket", sid=sid))

    def exchange() -> tuple[bytes, list[str]]:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            sock.sendall(request + _masked_text("2probe"))
            return _read_frames(sock, 1)

    head, frames = await asyncio.to_thread(exchange)
    assert head.startswith(b"HTTP/1.1 101 ") and frames == ["3probe"], (head, frames)


@pytest.mark.parametrize("authorization", [b"Basic \xe9\xe9", b"Bearer \xff\xfe", b"Basic =",
                                           b"Digest x"])
def test_every_websocket_handshake_is_answered_and_closed(gateway, authorization):
    request = _upgrade_request(gateway.port, "/socket.io/?" + query(3, "websocket"),
                               b"Authorization: " + authorization + b"\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes: a timeout fails the test
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert 400 <= status < 600, answer
    assert json.loads(body)["code"] == str(status)
