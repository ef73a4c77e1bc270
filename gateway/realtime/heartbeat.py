"""Every realtime connection's heartbeat on one timer: a min-heap and one `loop.call_later`.

A session says when it next needs attention (`Session.next_deadline()`: a ping due, a pong or
the client's ping overdue, an upgrade stalled). The heap holds one `(deadline, sid)` entry per
connection and a single loop timer is armed at the earliest, so each deadline is met within the
loop's timer resolution (a millisecond) — no task per connection, and no sweep on a coarse tick
(which sent EIO=4 pings up to a tick late: with pingInterval 1000 and pingTimeout 200, clients
dropped the connection for "ping timeout").

Input only ever moves a session's deadline later (see `session.py`), so entries are re-checked
lazily: when one comes up, the session's deadline is read again, `check_timeouts` runs if it is
really due, and the connection goes back on the heap at its new deadline. A client that talks a
lot (EIO=3 moves the deadline on every packet) costs nothing until its entry comes up. The one
input that can bring a deadline nearer, an upgrade starting, calls `schedule()` again.

Cost at 20k connections with the default 25 s interval: a heap pop and push per connection per
ping (EIO=4) or per pingInterval + pingTimeout (EIO=3), well under 2k heap operations a second,
and one loop timer.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from gateway.protocol import Session

log = logging.getLogger(__name__)

# uvloop's timers have millisecond resolution and may fire up to that much early: an entry this
# close to its deadline is treated as due, with the deadline as the session's `now`.
SLACK_S = 0.001
# Entries of connections closed before their deadline stay in the heap until they come up;
# past this many more entries than connections, the heap is rebuilt from the live ones.
_COMPACT_OVER = 1024


class Beating(Protocol):
    """A connection with a session whose timeouts must run (the gateway's `Connection`)."""

    session: Session

    @property
    def sid(self) -> str: ...

    def handle_events(self) -> None: ...


class Heartbeats:
    __slots__ = ("_lookup", "_heap", "_due", "_handle", "_armed_at")

    def __init__(self, lookup: Callable[[str], Beating | None]) -> None:
        self._lookup = lookup  # sid -> the open connection, or None once it is gone
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}  # sid -> the deadline of its live entry in the heap
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, conn: Beating) -> None:
        """Make sure `conn` is looked at by its session's next deadline (after open, and after
        anything that may bring the deadline nearer)."""
        deadline = conn.session.next_deadline()
        if deadline is None:
            return
        sid = conn.sid
        current = self._due.get(sid)
        if current is not None and current <= deadline:
            return  # its entry comes up first and is re-checked then
        self._push(sid, deadline)  # an older, later entry is now stale

    def _push(self, sid: str, deadline: float) -> None:
        self._due[sid] = deadline
        heapq.heappush(self._heap, (deadline, sid))
        if deadline < self._armed_at:
            self._arm(deadline)

    def forget(self, sid: str) -> None:
        """The connection is gone; its heap entry is dropped when it comes up."""
        if self._due.pop(sid, None) is not None and \
                len(self._heap) > 2 * len(self._due) + _COMPACT_OVER:
            self._heap = [(deadline, sid) for sid, deadline in self._due.items()]
            heapq.heapify(self._heap)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_at = math.inf
        self._heap.clear()
        self._due.clear()

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        delay = max(0.0, deadline - time.monotonic())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        heap, due = self._heap, self._due
        now = time.monotonic()
        ready: list[str] = []
        while heap and heap[0][0] <= now + SLACK_S:
            deadline, sid = heapq.heappop(heap)
            if due.get(sid) == deadline:  # else stale: gone, or replaced by a nearer entry
                del due[sid]
                ready.append(sid)
        for sid in ready:  # whatever they push back waits for the next firing: no busy loop
            conn = self._lookup(sid)
            if conn is None:
                continue
            try:
                next_deadline = conn.session.next_deadline()
                if next_deadline is not None and next_deadline <= now + SLACK_S:
                    conn.session.check_timeouts(max(now, next_deadline))
                    conn.handle_events()
            except Exception:
                log.exception("heartbeat failed", extra={"sid": sid})
                self._push(sid, now + 1.0)  # look again, without spinning on the failure
                continue
            self.schedule(conn)
        if heap and heap[0][0] < self._armed_at:
            self._arm(heap[0][0])
