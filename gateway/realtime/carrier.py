"""What the transports need from the connection they carry.

``websocket.py`` and ``polling.py`` only move data between a socket and a session; anything with
these members can ride them: the gateway's ``Connection``, or the conformance server's echo
connections (``gateway/conformance``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.protocol import Session
from gateway.realtime.disconnect import Disconnect


class Carrier(Protocol):
    session: Session
    wake: asyncio.Event  # set whenever the session has something to send, or closed
    polling: bool  # a long-polling GET is waiting on this connection

    @property
    def closed(self) -> bool: ...

    @property
    def close_reason(self) -> str | None: ...

    def drained(self) -> None:
        """The transport took everything queued."""

    def close(self, why: Disconnect) -> None:
        """Close the session with its close packets, and wake the transport to send them."""

    def handle_events(self) -> None:
        """Act on ``session.events_received()`` after each input; set ``wake`` if output is due."""
