"""Engine.IO protocol revision 4 codec (``EIO=4``, socket.io-client 3+, python-socketio 5).

Spec: https://github.com/socketio/engine.io-protocol ("Packet encoding").

Packets:
    text    ``<type digit>[<data>]``          e.g. ``4hello``, ``2``, ``3probe``
    binary  the raw bytes of a message packet, with no type byte (websocket only)
    base64  ``b<base64 data>``                a binary message inside a polling payload

Polling payloads: text packets joined with the record separator ``\\x1e``; binary messages are
always base64 (revision 4 dropped binary payloads, so the same bytes work for every client).
"""

from __future__ import annotations

import base64
import binascii
from typing import Sequence

from .engineio import Outgoing, Packet, PacketType, handshake_json
from .errors import LocalProtocolError, PacketDecodeError, PayloadDecodeError

__all__ = [
    "PROTOCOL",
    "SEPARATOR",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "open_packet",
]

PROTOCOL = 4
SEPARATOR = "\x1e"


def encode_packet(packet: Packet, *, binary_ok: bool = True) -> str | bytes:
    """Encode one packet for a websocket frame (or as part of a payload).

    Raises:
        LocalProtocolError: bytes data on a packet other than a message.
    """
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        if packet.type is not PacketType.MESSAGE:
            raise LocalProtocolError("only message packets can carry binary data")
        if binary_ok:
            return bytes(packet.data)
        return "b" + base64.b64encode(packet.data).decode("ascii")
    return str(int(packet.type)) + packet.data


def decode_packet(data: str | bytes) -> Packet:
    """Decode one packet from a websocket frame or from a payload.

    Raises:
        PacketDecodeError: empty input, an unknown type or invalid base64.
    """
    if isinstance(data, str):
        if not data:
            raise PacketDecodeError("empty packet")
        first = data[0]
        if first == "b":
            try:
                return Packet(PacketType.MESSAGE, base64.b64decode(data[1:], validate=True))
            except (binascii.Error, ValueError):
                raise PacketDecodeError("invalid base64 in packet") from None
        if not ("0" <= first <= "6"):
            raise PacketDecodeError(f"unknown packet type {first!r}")
        return Packet(PacketType(int(first)), data[1:])
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Packet(PacketType.MESSAGE, bytes(data))
    raise PacketDecodeError(f"packet must be str or bytes, not {type(data).__name__}")


def encode_payload(packets: Sequence[Outgoing], *, binary_ok: bool = False) -> str | bytes:
    """Encode packets for one polling response (always text; ``binary_ok`` is ignored).

    Args:
        packets: packets, or text packets already encoded (``"42[...]"``).
        binary_ok: accepted for the same signature as revision 3.
    """
    del binary_ok
    parts: list[str] = []
    for item in packets:
        if isinstance(item, str):
            parts.append(item)
        else:
            encoded = encode_packet(item, binary_ok=False)
            assert isinstance(encoded, str)
            parts.append(encoded)
    return SEPARATOR.join(parts)


def decode_payload(data: str | bytes) -> list[Packet]:
    """Decode a polling request body.

    Raises:
        PayloadDecodeError: binary (``application/octet-stream``) bodies, which revision 4 does
            not allow, or a body that is not a str.
        PacketDecodeError: one of the packets is invalid (an empty body is one empty packet).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadDecodeError("binary payloads are not part of Engine.IO v4")
    if not isinstance(data, str):
        raise PayloadDecodeError(f"payload must be str, not {type(data).__name__}")
    return [decode_packet(part) for part in data.split(SEPARATOR)]


def open_packet(
    sid: str,
    *,
    upgrades: Sequence[str],
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int,
) -> Packet:
    """The handshake packet, with ``maxPayload`` (bytes per polling payload)."""
    return Packet(
        PacketType.OPEN,
        handshake_json(sid, upgrades, ping_interval_ms, ping_timeout_ms, max_payload),
    )
