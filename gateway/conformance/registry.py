"""Open sessions by sid.

``get`` runs a session's timers before a request uses it, so a request that arrives just after
a deadline always finds the session closed (the suites probe exactly at pingInterval +
pingTimeout, which their own timers may not beat).

A closed session stays findable while it still has packets for a GET (the noop answering the
client's close packet, the close packet after a duplicate poll), for ``LINGER`` seconds at most.
"""

from __future__ import annotations

import asyncio
import time

from gateway.conformance.connections import ConformanceConnection

LINGER = 2.0


class Registry:
    def __init__(self) -> None:
        self._connections: dict[str, ConformanceConnection] = {}

    def add(self, conn: ConformanceConnection) -> None:
        self._connections[conn.sid] = conn
        conn.handle_events()

    def get(self, sid: str, *, for_poll: bool = False) -> ConformanceConnection | None:
        """The open session ``sid``; with ``for_poll``, also a closed one with packets due."""
        conn = self._connections.get(sid)
        if conn is None:
            return None
        conn.check_timeouts(time.monotonic())
        if not conn.closed:
            return conn
        if for_poll and conn.session.has_data_to_send and not conn.polling:
            return conn
        self._forget(conn)
        return None

    def on_closed(self, conn: ConformanceConnection) -> None:
        if conn.session.has_data_to_send:
            asyncio.get_running_loop().call_later(LINGER, self._forget, conn)
        else:
            self._forget(conn)

    def _forget(self, conn: ConformanceConnection) -> None:
        if self._connections.get(conn.sid) is conn:
            del self._connections[conn.sid]

    def close_all(self) -> None:
        for conn in list(self._connections.values()):
            conn.close()
