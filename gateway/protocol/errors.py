"""Errors raised by the sans-I/O protocol layer.

The tree::

    ProtocolError                    anything that breaks Engine.IO / Socket.IO rules
    ├── RemoteProtocolError          the peer sent something invalid (close the connection)
    │   ├── PacketDecodeError        one Engine.IO packet: empty, unknown type, bad base64, ...
    │   ├── PayloadDecodeError       polling payload framing: bad length, truncated, bad JSONP body
    │   ├── SocketIODecodeError      Socket.IO packet: bad JSON, bad namespace, bad attachments
    │   └── HeartbeatError           a ping or pong in the wrong direction for the version
    └── LocalProtocolError           we misused the API (send after close, unencodable data, ...)

Like h11's ``RemoteProtocolError`` / ``LocalProtocolError``: a peer fault is answered by closing
that one connection, a local fault is a bug in the caller. Every peer fault carries the
Socket.IO disconnect reason it maps to in ``reason``.
"""

from __future__ import annotations

__all__ = [
    "HeartbeatError",
    "LocalProtocolError",
    "PacketDecodeError",
    "PayloadDecodeError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketIODecodeError",
]


class ProtocolError(Exception):
    """Root of every error raised by ``gateway.protocol``."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    Attributes:
        reason: the disconnect reason, spelled as socket.io spells it.
    """

    reason: str = "parse error"


class PacketDecodeError(RemoteProtocolError):
    """A single Engine.IO packet could not be decoded."""


class PayloadDecodeError(RemoteProtocolError):
    """A polling payload (several packets framed together) could not be decoded."""


class SocketIODecodeError(RemoteProtocolError):
    """A Socket.IO packet, or one of its binary attachments, could not be decoded."""


class HeartbeatError(RemoteProtocolError):
    """A ping from an ``EIO=4`` client or a pong from an ``EIO=3`` client."""

    reason = "transport error"


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol does not allow."""
