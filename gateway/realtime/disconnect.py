"""Why the gateway ends a realtime connection, and whether the client should come back.

As centrifuge's `disconnect.go`: each reason is a value with what it tells the client. A
socket.io client treats a Socket.IO disconnect (`41`) as "the server kicked me" and never
reconnects, and python-socketio's client treats an Engine.IO close packet (`1`) the same way;
only a transport that just ends is a lost connection every client reconnects from by itself.
So `41` and `1` are sent only when the client must stay away — its credential ended (contract
§3) — and on shutdown (contract §5) or a slow consumer the socket just closes, and the client
comes back to whichever process serves next.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: str  # logged and reported, spelled as socket.io spells its reasons
    stay_away: bool  # True: send `41` first, so socket.io clients don't reconnect


SHUTDOWN = Disconnect("server shutting down", stay_away=False)
SLOW_CONSUMER = Disconnect("slow consumer", stay_away=False)
TRANSPORT_ERROR = Disconnect("transport error", stay_away=False)
PARSE_ERROR = Disconnect("parse error", stay_away=False)
CREDENTIAL_REVOKED = Disconnect("credential revoked", stay_away=True)
CREDENTIAL_EXPIRED = Disconnect("credential expired", stay_away=True)
USER_ENDED = Disconnect("user disabled, deleted or its password changed", stay_away=True)
