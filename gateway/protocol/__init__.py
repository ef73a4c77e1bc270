"""Sans-I/O Engine.IO (v3, v4) and Socket.IO protocol layer.

Bytes and strings in, events and bytes and strings out; time is an argument (``now``, monotonic
seconds). Imports nothing but the standard library.

- ``engineio_v3`` / ``engineio_v4``: Engine.IO codecs with identical signatures
- ``jsonp``: JSONP polling wrapping
- ``socketio``: Socket.IO packet codec, ``encode_broadcast``
- ``dialect``: everything that differs between EIO=3 and EIO=4, chosen once per connection
- ``session``: the per-connection state machine; ``events``: what it reports
"""

from .dialect import Dialect, dialect_for
from .engineio import Packet, PacketType
from .errors import (
    HeartbeatError,
    LocalProtocolError,
    PacketDecodeError,
    PayloadDecodeError,
    ProtocolError,
    RemoteProtocolError,
    SocketIODecodeError,
)
from .events import (
    AckReceived,
    Connected,
    Disconnected,
    Event,
    EventReceived,
    MessageReceived,
    NamespaceDisconnected,
    UpgradeAborted,
    Upgraded,
)
from .session import Session, SessionConfig, State
from .socketio import encode_broadcast

__all__ = [
    "AckReceived",
    "Connected",
    "Dialect",
    "Disconnected",
    "Event",
    "EventReceived",
    "HeartbeatError",
    "LocalProtocolError",
    "MessageReceived",
    "NamespaceDisconnected",
    "Packet",
    "PacketDecodeError",
    "PacketType",
    "PayloadDecodeError",
    "ProtocolError",
    "RemoteProtocolError",
    "Session",
    "SessionConfig",
    "SocketIODecodeError",
    "State",
    "UpgradeAborted",
    "Upgraded",
    "dialect_for",
    "encode_broadcast",
]
