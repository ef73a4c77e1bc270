"""A raw Engine.IO v3/v4 client over WebSocket as one asyncio.Protocol: cheap enough for 20k.

No `websockets` connection objects, no task per client: the HTTP upgrade, RFC 6455 framing and
the Engine.IO/Socket.IO packets a load client needs are handled in `data_received`. Server
frames are unmasked (RFC 6455 §5.1); client frames use a zero mask key, which every server
accepts and which leaves the payload bytes as they are (a load client needs no masking secrecy).

A client reports to its `Receiver` (the worker) through three calls: `ready` (subscribed, or
joined for a peer), `failed`, `closed`; and every message it gets through `receiver.record`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Protocol

MARKER = b'"lt":"'


class Receiver(Protocol):
    def record(self, index: int, seq: int, sent: float, now: float) -> None: ...
    def ready(self, client: EioClient) -> None: ...
    def failed(self, client: EioClient, reason: str) -> None: ...
    def closed(self, client: EioClient, reason: str) -> None: ...


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A client frame: FIN, the opcode, MASK with key 0000 (so the payload goes as is)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


PING_FRAME = frame(b"2")
PONG_FRAME = frame(b"3")
JOIN_FRAME = frame(b"40")


class EioClient(asyncio.Protocol):
    """One realtime client. States: upgrading → opening → joining → (subscribing) → ready."""

    __slots__ = ("index", "receiver", "request", "eio", "subscribe", "transport", "state",
                 "buf", "fragments", "ping_interval", "next_ping", "started", "connect_s",
                 "close_reason")

    def __init__(self, index: int, receiver: Receiver, *, host: str, port: int, path: str,
                 eio: int, cookie: str, subscribe_store: str | None) -> None:
        self.index = index
        self.receiver = receiver
        self.eio = eio
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path}?EIO={eio}&transport=websocket HTTP/1.1", f"Host: {host}:{port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if cookie:
            lines.append(f"Cookie: sid={cookie}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.subscribe = (frame(b'420["subscribe",' + json.dumps({"store": subscribe_store})
                                .encode() + b"]") if subscribe_store else None)
        self.transport: asyncio.Transport | None = None
        self.state = "upgrading"
        self.buf = bytearray()
        self.fragments: bytearray | None = None
        self.ping_interval = 25.0
        self.next_ping = 0.0
        self.started = time.perf_counter()
        self.connect_s = 0.0
        self.close_reason = ""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or ("transport error" if exc else "transport close")
        previous, self.state = self.state, "closed"
        if previous == "ready":
            self.receiver.closed(self, reason)
        elif previous != "closed":
            self.receiver.failed(self, f"closed while {previous}: {reason}")

    def data_received(self, data: bytes) -> None:
        if not self.buf and self.state == "ready" and self._fast(data):
            return
        buf = self.buf
        buf += data
        if self.state == "upgrading":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 16384:
                    self._fail("oversized HTTP response")
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(f"handshake refused: {status.decode('latin-1')}")
                return
            del buf[:end + 4]
            self.state = "opening"
        self._frames(time.time())

    # -- framing ----------------------------------------------------------------------------

    def _fast(self, data: bytes) -> bool:
        """The common case under load: `data` is exactly one unfragmented text frame `42…`
        with the marker. Handled without copying; anything else returns False."""
        if len(data) < 4:
            return False
        length = data[1]
        if data[0] != 0x81 or length & 0x80:
            return False
        length &= 0x7F
        head = 2 if length < 126 else (4 if length == 126 else 10)
        if head == 4:
            length = (data[2] << 8) | data[3]
        elif head == 10:
            return False
        if len(data) != head + length or data[head] != 0x34 or data[head + 1] != 0x32:
            return False
        at = data.find(MARKER, head)
        if at < 0:
            return True
        start = at + 6
        colon = data.find(b":", start)
        quote = data.find(b'"', colon)
        self.receiver.record(self.index, int(data[start:colon]), float(data[colon + 1:quote]),
                             time.time())
        return True

    def _frames(self, now: float) -> None:
        buf = self.buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if buf[pos + 1] & 0x80:
                head += 4  # a masked server frame is a protocol error; skip the key anyway
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head:end])
            pos = end
            opcode = b0 & 0x0F
            if not b0 & 0x80:  # a fragment: keep until FIN
                if opcode:
                    self.fragments = bytearray(payload)
                elif self.fragments is not None:
                    self.fragments += payload
                continue
            if opcode == 0 and self.fragments is not None:
                payload, self.fragments = bytes(self.fragments + payload), None
                opcode = 1
            if opcode == 1 or opcode == 2:
                self._packet(payload, now)
            elif opcode == 9:
                self._write(frame(payload, 10))
            elif opcode == 8:
                self.close_reason = "server close"
                if self.transport is not None:
                    self.transport.close()
                break
            if self.state == "closed":
                break
        if pos:
            del buf[:pos]

    # -- Engine.IO / Socket.IO --------------------------------------------------------------

    def _packet(self, packet: bytes, now: float) -> None:
        if packet[:2] == b"42":
            at = packet.find(MARKER)
            if at >= 0:
                start = at + len(MARKER)
                colon = packet.find(b":", start)
                quote = packet.find(b'"', colon)
                self.receiver.record(self.index, int(packet[start:colon]),
                                     float(packet[colon + 1:quote]), now)
            return
        kind = packet[:1]
        if kind == b"2":  # EIO=4: the server pings
            self._write(PONG_FRAME)
        elif kind == b"3":  # EIO=3: the server's answer to our ping
            pass
        elif kind == b"0":
            try:
                opened = json.loads(packet[1:])
                self.ping_interval = float(opened.get("pingInterval", 25000)) / 1000.0
            except ValueError:
                self._fail("bad open packet")
                return
            self.next_ping = time.monotonic() + self.ping_interval
            self.state = "joining"
            if self.eio == 4:
                self._write(JOIN_FRAME)
        elif packet[:2] == b"40" and self.state == "joining":
            if self.subscribe is not None:
                self.state = "subscribing"
                self._write(self.subscribe)
            else:
                self._ready()
        elif packet[:2] == b"43" and self.state == "subscribing":
            if b'"success":true' in packet.replace(b" ", b""):
                self._ready()
            else:
                self._fail(f"subscribe refused: {packet[:200].decode(errors='replace')}")
        elif packet[:2] == b"44":
            self._fail(f"namespace refused: {packet[:200].decode(errors='replace')}")
        elif packet[:2] == b"41" or kind == b"1":
            self.close_reason = "server namespace disconnect" if kind == b"4" else "server close"
            if self.transport is not None:
                self.transport.close()

    def _ready(self) -> None:
        self.state = "ready"
        self.connect_s = time.perf_counter() - self.started
        self.receiver.ready(self)

    def _fail(self, reason: str) -> None:
        if self.state != "closed":
            self.state = "closed"
            self.receiver.failed(self, reason)
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- called by the worker ---------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """EIO=3: the client pings every pingInterval (v4 clients only answer the server)."""
        if self.eio == 3 and self.state == "ready" and now >= self.next_ping:
            self.next_ping = now + self.ping_interval
            self._write(PING_FRAME)

    def close(self) -> None:
        self.close_reason = "client close"
        if self.state != "closed":
            self.state = "closed"
            if self.transport is not None:
                self._write(frame(b"1"))
                self._write(frame(b"", 8))
                self.transport.close()
