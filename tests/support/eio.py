"""Raw Engine.IO / Socket.IO helpers for tests: frames over `websockets`, payloads over httpx.

Nothing here speaks for the gateway: the helpers build and read the wire strings the protocol
specs define, so a test can assert exact frames both ways.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import Api


def query(eio: int | str | None = 3, transport: str = "websocket", **extra: str) -> str:
    params: dict[str, str] = {}
    if eio is not None:
        params["EIO"] = str(eio)
    params["transport"] = transport
    params.update(extra)
    return urlencode(params)


def ws_url(base: str, eio: int | str | None = 3, **extra: str) -> str:
    return base.replace("http://", "ws://") + "/socket.io/?" + query(eio, "websocket", **extra)


def polling_path(eio: int | str | None = 3, **extra: str) -> str:
    return "/socket.io/?" + query(eio, "polling", **extra)


def login(api: Api, user: dict[str, Any]) -> str:
    """A fresh cookie session for `user`; returns the `sid` cookie value."""
    response = api.http.post("/api/v1/auth", json={"login": user["login"],
                                                   "password": user["password"]})
    assert response.status_code == 200, response.text
    sid = response.cookies.get("sid")
    assert sid
    api.http.cookies.clear()  # the shared client must not carry this session into other calls
    return sid


def cookie(sid: str) -> dict[str, str]:
    return {"Cookie": f"sid={sid}"}


async def open_ws(base: str, *, eio: int = 3, headers: dict[str, str] | None = None,
                  **extra: str) -> ClientConnection:
    return await connect(ws_url(base, eio, **extra), additional_headers=headers or {},
                         max_size=None, ping_interval=None, open_timeout=5)


async def recv(ws: ClientConnection, timeout: float = 5.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def closed_within(ws: ClientConnection, timeout: float) -> list[str | bytes]:
    """Read until the server closes the socket; the frames read on the way. Fails on timeout."""
    frames: list[str | bytes] = []

    async def drain() -> None:
        try:
            while True:
                frames.append(await ws.recv())
        except ConnectionClosed:
            return

    await asyncio.wait_for(drain(), timeout)
    return frames


async def handshake(ws: ClientConnection, eio: int = 3) -> dict[str, Any]:
    """Read the open packet and join namespace "/"; returns the open packet's JSON."""
    first = await recv(ws)
    assert isinstance(first, str) and first.startswith("0"), first
    opened = json.loads(first[1:])
    if eio == 3:
        assert await recv(ws) == "40"
    else:
        await ws.send("40")
        joined = await recv(ws)
        assert isinstance(joined, str) and joined.startswith("40{"), joined
    return opened


def event_of(frame: str | bytes) -> tuple[str, Any] | None:
    """(name, argument) of a Socket.IO EVENT frame on namespace "/", else None."""
    if not isinstance(frame, str) or not frame.startswith("42["):
        return None
    name, *args = json.loads(frame[2:])
    return name, (args[0] if args else None)


class Client:
    """A Socket.IO client on namespace "/" over a raw websocket, answering the heartbeat."""

    def __init__(self, ws: ClientConnection, eio: int) -> None:
        self.ws = ws
        self.eio = eio
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.frames: list[str | bytes] = []
        self.closed = asyncio.Event()
        self._next_ack = 0
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, base: str, *, eio: int = 3, headers: dict[str, str] | None = None,
                      **extra: str) -> Client:
        ws = await open_ws(base, eio=eio, headers=headers, **extra)
        await handshake(ws, eio)
        client = cls(ws, eio)
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.frames.append(frame)
                if frame == "2":
                    await self.ws.send("3")
                elif isinstance(frame, str) and frame.startswith("43"):
                    ack_id, _, body = frame[2:].partition("[")
                    future = self.acks.pop(int(ack_id), None)
                    if future is not None and not future.done():
                        future.set_result(json.loads("[" + body)[0])
                elif (event := event_of(frame)) is not None:
                    self.events.put_nowait(event)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def emit(self, name: str, arg: Any, timeout: float = 5.0) -> Any:
        """Emit with an ack; returns the ack's argument."""
        self._next_ack += 1
        ack_id = self._next_ack
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[ack_id] = future
        await self.ws.send(f"42{ack_id}" + json.dumps([name, arg], separators=(",", ":")))
        return await asyncio.wait_for(future, timeout)

    async def subscribe(self, **spec: Any) -> Any:
        return await self.emit("subscribe", spec)

    async def unsubscribe(self, **spec: Any) -> Any:
        return await self.emit("unsubscribe", spec)

    async def next_event(self, timeout: float = 5.0) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def events_until(self, entity_id: str, timeout: float = 5.0) -> list[tuple[str, Any]]:
        """Every event up to and including the first one about `entity_id` (a marker)."""
        seen = []
        while True:
            name, event = await self.next_event(timeout)
            seen.append((name, event))
            if event.get("entityId") == entity_id:
                return seen

    async def close(self) -> None:
        await self.ws.close()
        if self._reader:
            await asyncio.wait({self._reader}, timeout=2)


# -- polling (EIO=3 text payloads) ----------------------------------------------------------
def decode_v3_payload(body: str) -> list[str]:
    """`<length>:<packet>` records (length in characters) into packets."""
    packets = []
    while body:
        length, _, rest = body.partition(":")
        n = int(length)
        packets.append(rest[:n])
        body = rest[n:]
    return packets


def decode_v4_payload(body: str) -> list[str]:
    return body.split("\x1e") if body else []


async def open_polling(http: httpx.AsyncClient, base: str, headers: dict[str, str]) -> str:
    """An EIO=3 long-polling session joined to "/"; returns its sid."""
    response = await http.get(base + polling_path(3), headers=headers)
    assert response.status_code == 200, response.text
    packets = decode_v3_payload(response.text)
    assert packets[0].startswith("0") and packets[1:] == ["40"], packets
    return str(json.loads(packets[0][1:])["sid"])


async def poll(http: httpx.AsyncClient, base: str, sid: str, headers: dict[str, str],
               timeout: float = 5.0) -> list[str]:
    """One long-poll GET of an EIO=3 session: the packets it returned."""
    response = await http.get(base + polling_path(3, sid=sid), headers=headers, timeout=timeout)
    assert response.status_code == 200, response.text
    return decode_v3_payload(response.text)


# -- a websocket that stops reading ---------------------------------------------------------
class StuckSocket:
    """A websocket client on a plain TCP socket with a tiny receive buffer, which can send
    frames but never reads after the handshake: the slowest possible consumer."""

    def __init__(self, base: str, *, eio: int = 3, headers: dict[str, str] | None = None) -> None:
        host, port = base.split("://", 1)[1].split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET /socket.io/?{query(eio, 'websocket')} HTTP/1.1", f"Host: {host}:{port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()


async def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        rest = sample[len(name):]
        if labels:
            if not rest.startswith("{"):
                continue
            found = dict(part.split("=", 1) for part in rest[1:-1].split(",") if part)
            if any(found.get(k) != json.dumps(v) for k, v in labels.items()):
                continue
        elif rest not in ("",):
            continue
        return float(value)
    return 0.0


def get_metrics(base: str) -> str:
    return httpx.get(base + "/metrics", timeout=5).text
