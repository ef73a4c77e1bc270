"""Socket.IO packet codec (protocol revisions 4 and 5; the packet format is the same).

Spec: https://github.com/socketio/socket.io-protocol ("Packet encoding")::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON data without binary>]
    + one binary Engine.IO message per attachment

``51-["x",{"_placeholder":true,"num":0}]`` followed by one binary frame is the event ``x`` with
one bytes argument. The namespace is written only when it is not ``/``. Each encoded packet
travels as the data of an Engine.IO message packet (``4`` + packet).

Where revisions 4 (``EIO=3``) and 5 (``EIO=4``) differ — implicit connection to ``/``, the
connect payloads, ``ERROR`` vs ``CONNECT_ERROR`` data — is the session's business (see
``dialect.py``); this codec reads and writes both.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, SocketIODecodeError

__all__ = [
    "RESERVED_EVENTS",
    "Decoder",
    "SIOPacket",
    "SIOType",
    "encode",
    "encode_broadcast",
]


class SIOType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4  # "ERROR" in revision 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


# Names a client may not emit: the server-side library uses them for its own events.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

_MAX_ID_DIGITS = 15  # ack ids are JavaScript numbers; stay well inside 2**53
_MAX_ATTACHMENTS_DIGITS = 6


@dataclass(frozen=True, slots=True)
class SIOPacket:
    """A Socket.IO packet. ``data`` is JSON-compatible, with bytes allowed anywhere inside
    EVENT/ACK data (they become attachments); ``None`` means no data."""

    type: SIOType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"data is not JSON-serialisable: {exc}") from None


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    """Replace every bytes value with a numbered placeholder, collecting the bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, (list, tuple)):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def _has_binary(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    if isinstance(data, (list, tuple)):
        return any(_has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(_has_binary(value) for value in data.values())
    return False


def encode(packet: SIOPacket) -> tuple[str, list[bytes]]:
    """Encode a packet as its text part and its binary attachments.

    EVENT/ACK data containing bytes is sent as BINARY_EVENT/BINARY_ACK automatically.

    Raises:
        LocalProtocolError: the data is not JSON-serialisable, or bytes outside EVENT/ACK.
    """
    kind = packet.type
    buffers: list[bytes] = []
    data = packet.data
    if data is not None and _has_binary(data):
        if kind in (SIOType.EVENT, SIOType.BINARY_EVENT):
            kind = SIOType.BINARY_EVENT
        elif kind in (SIOType.ACK, SIOType.BINARY_ACK):
            kind = SIOType.BINARY_ACK
        else:
            raise LocalProtocolError(f"{kind.name} packets cannot carry binary data")
        data = _deconstruct(data, buffers)
    elif kind is SIOType.BINARY_EVENT:
        kind = SIOType.EVENT
    elif kind is SIOType.BINARY_ACK:
        kind = SIOType.ACK
    if not packet.namespace.startswith("/"):
        raise LocalProtocolError(f"namespace must start with '/': {packet.namespace!r}")
    parts = [str(int(kind))]
    if buffers:
        parts.append(f"{len(buffers)}-")
    if packet.namespace != "/":
        parts.append(packet.namespace + ",")
    if packet.id is not None:
        parts.append(str(int(packet.id)))
    if data is not None:
        parts.append(_dumps(data))
    return "".join(parts), buffers


def encode_broadcast(namespace: str, name: str, *args: Any) -> str:
    """Encode an event once, as the Engine.IO message packet text (``42["name",...]``).

    The result is the same for Engine.IO v3 and v4 and can be queued on any number of sessions
    with ``Session.send_encoded``.

    Raises:
        LocalProtocolError: an argument is bytes (broadcasts are text only) or not JSON.
    """
    text, buffers = encode(SIOPacket(SIOType.EVENT, namespace, [name, *args]))
    if buffers:
        raise LocalProtocolError("broadcast events cannot carry binary data")
    return "4" + text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise SocketIODecodeError("invalid JSON in packet") from None


def _is_valid(kind: SIOType, data: Any, packet_id: int | None) -> bool:
    if kind is SIOType.CONNECT:
        return data is None or isinstance(data, dict)
    if kind is SIOType.DISCONNECT:
        return data is None
    if kind is SIOType.CONNECT_ERROR:
        return isinstance(data, (str, dict))
    if kind in (SIOType.EVENT, SIOType.BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return False
        name = data[0]
        if isinstance(name, str):
            return name not in RESERVED_EVENTS
        return isinstance(name, (int, float)) and not isinstance(name, bool)
    # ACK and BINARY_ACK answer an id, with a (possibly empty) list of arguments
    return isinstance(data, list) and packet_id is not None


def _decode_text(text: str) -> tuple[SIOPacket, int]:
    """Decode the text part of a packet; return it and its attachment count."""
    if not text or not ("0" <= text[0] <= "6"):
        raise SocketIODecodeError(f"unknown packet type {text[:1]!r}")
    kind = SIOType(int(text[0]))
    pos = 1
    attachments = 0
    if kind in (SIOType.BINARY_EVENT, SIOType.BINARY_ACK):
        dash = text.find("-", pos, pos + _MAX_ATTACHMENTS_DIGITS + 1)
        digits = text[pos:dash] if dash >= 0 else ""
        if not digits or not (digits.isascii() and digits.isdigit()):
            raise SocketIODecodeError("illegal attachments count")
        attachments = int(digits)
        pos = dash + 1
    namespace = "/"
    if text.startswith("/", pos):
        comma = text.find(",", pos)
        end = len(text) if comma < 0 else comma
        namespace = text[pos:end]
        pos = end + 1
    start = pos
    while pos < len(text) and "0" <= text[pos] <= "9":
        pos += 1
    if pos - start > _MAX_ID_DIGITS:
        raise SocketIODecodeError("ack id too long")
    packet_id = int(text[start:pos]) if pos > start else None
    data = _loads(text[pos:]) if pos < len(text) else None
    if not _is_valid(kind, data, packet_id):
        raise SocketIODecodeError(f"invalid {kind.name} payload")
    return SIOPacket(kind, namespace, data, packet_id), attachments


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    """Put each attachment in place of its placeholder."""
    try:
        return _replace_placeholders(data, buffers)
    except RecursionError:
        # The JSON parser accepts nesting up to the interpreter's recursion limit; this walk
        # takes two frames a level, so half that depth must be refused here, as a peer fault.
        raise SocketIODecodeError("binary packet data nested too deeply") from None


def _replace_placeholders(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, list):
        return [_replace_placeholders(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True:
            num = data.get("num")
            if isinstance(num, int) and not isinstance(num, bool) and 0 <= num < len(buffers):
                return buffers[num]
            raise SocketIODecodeError("placeholder refers to a missing attachment")
        return {key: _replace_placeholders(value, buffers) for key, value in data.items()}
    return data


class Decoder:
    """Turns Engine.IO message data into Socket.IO packets, reassembling binary ones.

    Feed each message's data in order; ``feed`` returns a packet once it is complete, or
    ``None`` while attachments of a binary packet are still due. Decoded BINARY_EVENT and
    BINARY_ACK packets come out as EVENT and ACK with bytes in place of the placeholders.
    """

    __slots__ = ("_max_attachments", "_pending", "_buffers", "_expected")

    def __init__(self, *, max_attachments: int = 10) -> None:
        self._max_attachments = max_attachments
        self._pending: SIOPacket | None = None
        self._buffers: list[bytes] = []
        self._expected = 0

    @property
    def awaiting_attachments(self) -> bool:
        return self._pending is not None

    def feed(self, data: str | bytes) -> SIOPacket | None:
        """Decode one message.

        Raises:
            SocketIODecodeError: invalid packet, text while attachments are due, bytes when
                none are, too many attachments, or a placeholder without its attachment.
        """
        if isinstance(data, str):
            if self._pending is not None:
                raise SocketIODecodeError("text packet while binary attachments are due")
            packet, attachments = _decode_text(data)
            if attachments > self._max_attachments:
                raise SocketIODecodeError(f"too many attachments ({attachments})")
            if packet.type not in (SIOType.BINARY_EVENT, SIOType.BINARY_ACK):
                return packet
            plain = SIOType.EVENT if packet.type is SIOType.BINARY_EVENT else SIOType.ACK
            packet = SIOPacket(plain, packet.namespace, packet.data, packet.id)
            if attachments == 0:
                return SIOPacket(plain, packet.namespace, _reconstruct(packet.data, []), packet.id)
            self._pending = packet
            self._buffers = []
            self._expected = attachments
            return None
        if isinstance(data, (bytes, bytearray, memoryview)):
            pending = self._pending
            if pending is None:
                raise SocketIODecodeError("binary data without a binary packet")
            self._buffers.append(bytes(data))
            if len(self._buffers) < self._expected:
                return None
            buffers, self._pending, self._buffers = self._buffers, None, []
            return SIOPacket(
                pending.type, pending.namespace, _reconstruct(pending.data, buffers), pending.id
            )
        raise SocketIODecodeError(f"message must be str or bytes, not {type(data).__name__}")
