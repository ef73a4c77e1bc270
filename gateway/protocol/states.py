"""Transport states of a session and every transition between them, in one table.

::

    POLLING ──start_upgrade──▶ PROBING ──client sends 5──▶ WEBSOCKET
       ▲                          │
       └─────abort / timeout──────┘
    any state ──close / ping timeout / peer fault / transport closed──▶ CLOSED

``Session._transition`` looks triggers up here; a pair missing from the table is a
``LocalProtocolError`` (the caller asked for something impossible in that state).
"""

from __future__ import annotations

import enum

__all__ = ["State", "TRANSITIONS", "Trigger"]


class State(enum.Enum):
    POLLING = "polling"
    PROBING = "probing"  # still polling; a websocket is testing the upgrade
    WEBSOCKET = "websocket"
    CLOSED = "closed"


class Trigger(enum.Enum):
    START_UPGRADE = "start_upgrade"
    UPGRADE = "upgrade packet"
    ABORT_UPGRADE = "abort upgrade"
    CLOSE = "close"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.POLLING, Trigger.START_UPGRADE): State.PROBING,
    (State.PROBING, Trigger.UPGRADE): State.WEBSOCKET,
    (State.PROBING, Trigger.ABORT_UPGRADE): State.POLLING,
    (State.POLLING, Trigger.CLOSE): State.CLOSED,
    (State.PROBING, Trigger.CLOSE): State.CLOSED,
    (State.WEBSOCKET, Trigger.CLOSE): State.CLOSED,
}
