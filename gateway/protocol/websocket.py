"""WebSocket (RFC 6455), server side, sans-I/O: the opening handshake and the framing.

Only what an Engine.IO server needs, and nothing that allocates per connection beyond a
receive buffer: client frames are parsed from bytes (``FrameReader``), server frames are built
as bytes (``encode_frame``). Server frames are never masked (RFC 6455 §5.1), so one broadcast
can be framed once and the same bytes written to every connection.

Not supported, on purpose: extensions (permessage-deflate would cost a compressor per
connection and defeat frame-once broadcasting) and subprotocols.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from .errors import RemoteProtocolError

__all__ = [
    "CLOSE",
    "BINARY",
    "Frame",
    "FrameReader",
    "PING",
    "PONG",
    "TEXT",
    "WebSocketError",
    "accept_key",
    "close_frame",
    "encode_frame",
]

CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DATA_OPCODES = (TEXT, BINARY)
_CONTROL_OPCODES = (CLOSE, PING, PONG)

# Close codes (RFC 6455 §7.4.1)
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009


class WebSocketError(RemoteProtocolError):
    """The client broke the framing rules; close with ``code``."""

    reason = "transport error"

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete message (fragments joined) or a control frame."""

    opcode: int
    payload: bytes


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(client_key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_client_key(client_key: str | None) -> bool:
    if not client_key:
        return False
    try:
        return len(base64.b64decode(client_key.strip(), validate=True)) == 16
    except ValueError:
        return False


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked server frame."""
    length = len(payload)
    head = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", head, length) + payload
    if length < 65536:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload


def text_frame(text: str) -> bytes:
    return encode_frame(TEXT, text.encode("utf-8"))


def close_frame(code: int = NORMAL_CLOSURE, reason: str = "") -> bytes:
    return encode_frame(CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:120])


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR through one big integer: much faster than a Python loop over bytes.
    if not payload:
        return payload
    length = len(payload)
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        length, "little"
    )


class FrameReader:
    """Turns the bytes a client sends into ``Frame``s.

    Args:
        max_message: largest message (after joining fragments) accepted, in bytes.
    """

    __slots__ = ("_buffer", "_fragments", "_fragment_opcode", "_fragment_size", "_max_message")

    def __init__(self, *, max_message: int = 1_000_000) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._max_message = max_message

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete.

        Raises:
            WebSocketError: the bytes break RFC 6455 (unmasked frame, bad opcode, reserved
                bits, fragmented control frame, oversized message, invalid UTF-8 text).
        """
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            fin, opcode = first & 0x80, first & 0x0F
            if first & 0x70:
                raise WebSocketError("reserved bits set; no extension was negotiated")
            if not second & 0x80:
                raise WebSocketError("client frames must be masked")
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
            if length > self._max_message:
                raise WebSocketError("message too big", MESSAGE_TOO_BIG)
            end = offset + header + 4 + length
            if size < end:
                break
            mask = bytes(buffer[offset + header : offset + header + 4])
            payload = _unmask(bytes(buffer[offset + header + 4 : end]), mask)
            offset = end
            frame = self._frame(fin, opcode, payload)
            if frame is not None:
                frames.append(frame)
        if offset:
            del buffer[:offset]
        return frames

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Frame | None:
        if opcode in _CONTROL_OPCODES:
            if not fin or len(payload) > 125:
                raise WebSocketError("control frames must be whole and at most 125 bytes")
            return Frame(opcode, payload)
        if opcode == CONTINUATION:
            if not self._fragments:
                raise WebSocketError("continuation frame without a message to continue")
            self._fragment_size += len(payload)
            if self._fragment_size > self._max_message:
                raise WebSocketError("message too big", MESSAGE_TOO_BIG)
            self._fragments.append(payload)
            if not fin:
                return None
            opcode, payload = self._fragment_opcode, b"".join(self._fragments)
            self._fragments = []
            self._fragment_size = 0
        elif opcode in _DATA_OPCODES:
            if self._fragments:
                raise WebSocketError("new message before the previous one ended")
            if not fin:
                self._fragment_opcode = opcode
                self._fragments = [payload]
                self._fragment_size = len(payload)
                return None
        else:
            raise WebSocketError(f"unknown opcode {opcode:#x}")
        if opcode == TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError("text message is not UTF-8", INVALID_DATA) from None
        return Frame(opcode, payload)
