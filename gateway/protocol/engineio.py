"""Engine.IO packet types shared by the v3 and v4 codecs, and the codec interface.

``engineio_v3`` and ``engineio_v4`` are modules with identical signatures (the ``Codec``
protocol below); a connection picks one from its ``EIO`` query parameter and never looks at the
version again.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Protocol, Sequence

__all__ = ["Codec", "Packet", "PacketType", "Outgoing", "handshake_json"]


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet. ``data`` is text, or bytes for a binary message."""

    type: PacketType
    data: str | bytes = ""


# An item of an outgoing queue: a packet, or a text packet already encoded for the wire
# (``"42[...]"``), so a broadcast is JSON-encoded once and the same string written to every
# connection.
Outgoing = Packet | str


class Codec(Protocol):
    """What ``engineio_v3`` and ``engineio_v4`` both provide."""

    PROTOCOL: int

    def encode_packet(self, packet: Packet, *, binary_ok: bool = True) -> str | bytes: ...

    def decode_packet(self, data: str | bytes) -> Packet: ...

    def encode_payload(
        self, packets: Sequence[Outgoing], *, binary_ok: bool = False
    ) -> str | bytes: ...

    def decode_payload(self, data: str | bytes) -> list[Packet]: ...

    def open_packet(
        self,
        sid: str,
        *,
        upgrades: Sequence[str],
        ping_interval_ms: int,
        ping_timeout_ms: int,
        max_payload: int,
    ) -> Packet: ...


def handshake_json(
    sid: str,
    upgrades: Sequence[str],
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int | None,
) -> str:
    """The open packet's JSON, fields in the order node's engine.io writes them."""
    fields: dict[str, object] = {
        "sid": sid,
        "upgrades": list(upgrades),
        "pingInterval": int(ping_interval_ms),
        "pingTimeout": int(ping_timeout_ms),
    }
    if max_payload is not None:
        fields["maxPayload"] = int(max_payload)
    return json.dumps(fields, separators=(",", ":"))
