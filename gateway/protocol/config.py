"""Settings shared by every session of one server."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SessionConfig"]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-server settings shared by every session.

    Attributes:
        ping_interval_ms: heartbeat interval, sent in the open packet.
        ping_timeout_ms: heartbeat grace, sent in the open packet.
        max_payload: bytes per polling payload, advertised to ``EIO=4`` clients.
        upgrade_timeout_ms: time allowed from ``start_upgrade`` to the client's ``5``.
        allow_upgrades: advertise ``websocket`` to polling clients.
        namespaces: namespaces a client may join.
        max_attachments: binary attachments allowed in one Socket.IO packet.
        socketio: carry Socket.IO in the messages. ``False`` makes a plain Engine.IO session:
            each message is reported as ``MessageReceived`` and sent with ``send_message``.
    """

    ping_interval_ms: int = 25_000
    ping_timeout_ms: int = 60_000
    max_payload: int = 1_000_000
    upgrade_timeout_ms: int = 10_000
    allow_upgrades: bool = True
    namespaces: frozenset[str] = frozenset({"/"})
    max_attachments: int = 10
    socketio: bool = True
