"""Events a ``Session`` reports to the I/O layer, and the disconnect reasons.

Reasons are values spelled as socket.io spells them, so logs and metrics read the same as
with the reference server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .errors import ProtocolError

__all__ = [
    "AckReceived",
    "CLIENT_NAMESPACE_DISCONNECT",
    "Connected",
    "Disconnected",
    "Event",
    "EventReceived",
    "FORCED_CLOSE",
    "MessageReceived",
    "NamespaceDisconnected",
    "PARSE_ERROR",
    "PING_TIMEOUT",
    "SERVER_NAMESPACE_DISCONNECT",
    "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR",
    "UpgradeAborted",
    "Upgraded",
]

TRANSPORT_CLOSE: Final = "transport close"
TRANSPORT_ERROR: Final = "transport error"
PING_TIMEOUT: Final = "ping timeout"
PARSE_ERROR: Final = "parse error"
FORCED_CLOSE: Final = "forced close"
SERVER_NAMESPACE_DISCONNECT: Final = "server namespace disconnect"
CLIENT_NAMESPACE_DISCONNECT: Final = "client namespace disconnect"


@dataclass(frozen=True, slots=True)
class Connected:
    """The client joined a namespace (``auth``: the CONNECT payload, or for ``EIO=3`` the
    namespace's query string as a dict; ``socket_id``: the id sent back, ``EIO=4`` only)."""

    namespace: str
    auth: dict[str, Any] | None
    socket_id: str | None


@dataclass(frozen=True, slots=True)
class EventReceived:
    """The client emitted ``name`` with ``args``; answer with ``send_ack`` when ``ack_id`` is
    not None."""

    namespace: str
    name: str
    args: tuple[Any, ...]
    ack_id: int | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The client acknowledged an event we sent with ``send_event(..., ack=True)``."""

    namespace: str
    ack_id: int
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A plain Engine.IO message (sessions with ``SessionConfig.socketio`` off only)."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class NamespaceDisconnected:
    namespace: str
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The session is over; ``error`` is the peer fault that ended it, if any."""

    reason: str
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The client moved to the websocket: stop using the polling transport."""


@dataclass(frozen=True, slots=True)
class UpgradeAborted:
    """The probe websocket failed or timed out: close it, keep polling."""

    reason: str


Event = (
    Connected
    | EventReceived
    | AckReceived
    | MessageReceived
    | NamespaceDisconnected
    | Disconnected
    | Upgraded
    | UpgradeAborted
)
