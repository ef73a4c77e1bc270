"""Engine.IO protocol revision 3 codec (``EIO=3``, socket.io-client 1.x/2.x).

Spec: https://github.com/socketio/engine.io-protocol/tree/v3 ("Encoding").

Packets:
    text    ``<type digit>[<data>]``                     e.g. ``4hello``, ``2probe``
    binary  ``<type byte><data>``                        e.g. ``04 01 02 03`` over websocket
    base64  ``b<type digit><base64 data>``               binary packet for clients without binary

Polling payloads:
    text    ``<length>:<packet>`` repeated. ``length`` counts JavaScript string length, i.e.
            UTF-16 code units: ``€`` counts 1, ``😀`` (outside the BMP) counts 2.
    binary  ``<0 string | 1 binary><length as digit bytes 0-9><0xFF><packet>`` repeated; the
            length counts bytes (string packets are UTF-8 encoded, the type a digit character;
            binary packets start with the type as a raw byte).
"""

from __future__ import annotations

import base64
import binascii
from typing import Sequence

from .engineio import Outgoing, Packet, PacketType, handshake_json
from .errors import LocalProtocolError, PacketDecodeError, PayloadDecodeError

__all__ = [
    "PROTOCOL",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "open_packet",
]

PROTOCOL = 3

# node's parser refuses length headers longer than Number.MAX_VALUE's 310 digits; a real
# packet never needs more than a handful.
_MAX_LENGTH_DIGITS = 16
_SEPARATOR = 0xFF


def _packet_type(value: int) -> PacketType:
    try:
        return PacketType(value)
    except ValueError:
        raise PacketDecodeError(f"unknown packet type {value!r}") from None


def encode_packet(packet: Packet, *, binary_ok: bool = True) -> str | bytes:
    """Encode one packet for a websocket frame (or as part of a payload).

    Binary data becomes a binary frame (type byte first) when ``binary_ok``, else a ``b``
    base64 string.
    """
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        data = bytes(packet.data)
        if binary_ok:
            return bytes((int(packet.type),)) + data
        return "b" + str(int(packet.type)) + base64.b64encode(data).decode("ascii")
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
            return _decode_base64_packet(data)
        if not ("0" <= first <= "9"):
            raise PacketDecodeError(f"unknown packet type {first!r}")
        return Packet(_packet_type(int(first)), data[1:])
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if not raw:
            raise PacketDecodeError("empty binary packet")
        return Packet(_packet_type(raw[0]), raw[1:])
    raise PacketDecodeError(f"packet must be str or bytes, not {type(data).__name__}")


def _decode_base64_packet(data: str) -> Packet:
    if len(data) < 2 or not ("0" <= data[1] <= "9"):
        raise PacketDecodeError("base64 packet without a packet type")
    kind = _packet_type(int(data[1]))
    try:
        return Packet(kind, base64.b64decode(data[2:], validate=True))
    except (binascii.Error, ValueError):
        raise PacketDecodeError("invalid base64 in packet") from None


def _utf16_length(text: str) -> int:
    """``text.length`` as JavaScript counts it."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _encoded_text(item: Outgoing, binary_ok: bool) -> str | bytes:
    if isinstance(item, str):
        return item
    return encode_packet(item, binary_ok=binary_ok)


def encode_payload(packets: Sequence[Outgoing], *, binary_ok: bool = False) -> str | bytes:
    """Encode packets for one polling response.

    Args:
        packets: packets, or text packets already encoded (``"42[...]"``).
        binary_ok: the client supports binary (no ``b64=1`` in the query). If it does and a
            packet carries bytes, the payload is binary; otherwise it is text, bytes in base64.
    """
    has_binary = any(isinstance(p, Packet) and isinstance(p.data, bytes) for p in packets)
    if binary_ok and has_binary:
        return _encode_binary_payload(packets)
    if not packets:
        return "0:"
    parts: list[str] = []
    for item in packets:
        text = _encoded_text(item, False)
        assert isinstance(text, str)
        parts.append(f"{_utf16_length(text)}:{text}")
    return "".join(parts)


def _encode_binary_payload(packets: Sequence[Outgoing]) -> bytes:
    out = bytearray()
    for item in packets:
        encoded = _encoded_text(item, True)
        if isinstance(encoded, str):
            try:
                body = encoded.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LocalProtocolError(f"packet is not valid text: {exc}") from None
            out.append(0)
        else:
            body = encoded
            out.append(1)
        out += bytes(int(digit) for digit in str(len(body)))
        out.append(_SEPARATOR)
        out += body
    return bytes(out)


def decode_payload(data: str | bytes) -> list[Packet]:
    """Decode a polling request body: text, or binary (``application/octet-stream``).

    Raises:
        PayloadDecodeError: bad framing (missing or bad length, truncated payload).
        PacketDecodeError: a framed packet is itself invalid.
    """
    if isinstance(data, str):
        return _decode_text_payload(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _decode_binary_payload(bytes(data))
    raise PayloadDecodeError(f"payload must be str or bytes, not {type(data).__name__}")


def _decode_text_payload(data: str) -> list[Packet]:
    if not data:
        raise PayloadDecodeError("empty payload")
    # Lengths count UTF-16 code units. Without characters outside the BMP, code units and
    # Python characters coincide and we slice the str; otherwise slice its UTF-16 encoding.
    units: bytes | None = None
    if not data.isascii():
        encoded = data.encode("utf-16-le", "surrogatepass")
        if len(encoded) // 2 != len(data):
            units = encoded
    packets: list[Packet] = []
    pos = 0  # in characters
    unit_pos = 0  # in UTF-16 code units
    while pos < len(data):
        colon = data.find(":", pos, pos + _MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            raise PayloadDecodeError("missing or too long length header")
        digits = data[pos:colon]
        if not digits or not (digits.isascii() and digits.isdigit()):
            raise PayloadDecodeError(f"bad length header {digits!r}")
        length = int(digits)
        unit_pos += colon + 1 - pos  # the header is ASCII: one unit per character
        pos = colon + 1
        if units is None:
            message = data[pos : pos + length]
            if len(message) != length:
                raise PayloadDecodeError("truncated payload")
        else:
            chunk = units[2 * unit_pos : 2 * (unit_pos + length)]
            if len(chunk) != 2 * length:
                raise PayloadDecodeError("truncated payload")
            try:
                message = chunk.decode("utf-16-le")
            except UnicodeDecodeError:
                raise PayloadDecodeError("length splits a character") from None
        pos += len(message)
        unit_pos += length
        if message:
            packets.append(decode_packet(message))
    return packets


def _decode_binary_payload(data: bytes) -> list[Packet]:
    if not data:
        raise PayloadDecodeError("empty payload")
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        marker = data[pos]
        if marker not in (0, 1):
            raise PayloadDecodeError(f"bad binary payload marker {marker}")
        end = data.find(_SEPARATOR, pos + 1, pos + 2 + _MAX_LENGTH_DIGITS)
        if end < 0:
            raise PayloadDecodeError("missing or too long length header")
        digits = data[pos + 1 : end]
        if not digits or any(d > 9 for d in digits):
            raise PayloadDecodeError("bad length header")
        length = int("".join(str(d) for d in digits))
        body = data[end + 1 : end + 1 + length]
        if len(body) != length:
            raise PayloadDecodeError("truncated payload")
        pos = end + 1 + length
        if marker == 0:
            try:
                packets.append(decode_packet(body.decode("utf-8")))
            except UnicodeDecodeError:
                raise PayloadDecodeError("string packet is not UTF-8") from None
        else:
            packets.append(decode_packet(body))
    return packets


def open_packet(
    sid: str,
    *,
    upgrades: Sequence[str],
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int,
) -> Packet:
    """The handshake packet. Revision 3 has no ``maxPayload`` field."""
    del max_payload
    return Packet(
        PacketType.OPEN, handshake_json(sid, upgrades, ping_interval_ms, ping_timeout_ms, None)
    )
