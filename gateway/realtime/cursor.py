"""Where one connection stands in one store's event stream: the rule that makes delivery
exactly-once-per-connection and ordered, whatever the client subscribes, and when.

Three facts carry it:

1. Every event of a store is published in id order (the Lua script that assigns the id also
   publishes it), and one pub/sub connection delivers messages in the order they were
   published: a process sees a store's events in id order.
2. Each connection remembers, per store, the id of the last event it was offered
   (`sent_up_to`): an event at or below it is never sent again. That gives "at most once" and
   "in id order" with one string comparison per event.
3. A replay (`subscribe` with `since`) holds back the store's live events for that connection
   while it reads the history, then merges both by id: the history covers everything published
   before the read, the held events everything after, so nothing falls between them.

Because of (2) a replay can't go back behind what the connection was already offered: if
`since` is older than `sent_up_to` and an event in between was not offered through a topic the
connection held at that moment, sending it now would break the order, so it is not sent and
the subscription answers `recovered: false` (the client refetches, as after an expired
history). To know what each topic was offered, the connection keeps per topic the id it is
complete from: the hub's horizon when it was joined (every later event still had to come
through dispatch), or `since` after a replay that recovered.

A connection keeps its cursors after unsubscribing — re-subscribing with an old `since` must not
send an event twice — but not without bound: beyond `MAX_IDLE_CURSORS` cursors of stores it no
longer watches, the oldest are folded into one connection-wide `floor`. Event ids of one Redis
compare across stores, and a process sees events in publish order, so every live event that
arrives later has an id above the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
Topic = tuple[str, str | None]  # (store, entity id or None for the whole store)

MAX_IDLE_CURSORS = 256


@dataclass(slots=True)
class StoreCursor:
    sent_up_to: str = ""  # id of the last event of this store this connection was offered
    held: list[Event] | None = None  # live events held back while a replay reads the history
    topics: int = 0  # subscriptions of this connection in this store


@dataclass(slots=True)
class Cursors:
    """One connection's cursors, by store."""

    by_store: dict[str, StoreCursor] = field(default_factory=dict)
    floor: str = ""  # the highest `sent_up_to` of the cursors folded away
    fold_at: int = MAX_IDLE_CURSORS  # look for idle cursors once there are this many

    def get(self, store: str, seen: str | None = None) -> StoreCursor:
        """The store's cursor; a new one starts at the floor, or at `seen` (the newest id of
        the store the process dispatched) when lower: ids of different streams can tie in one
        millisecond, and every live event of the store to come is above `seen`."""
        cursor = self.by_store.get(store)
        if cursor is None:
            start = self.floor if seen is None else min(self.floor, seen)
            cursor = self.by_store[store] = StoreCursor(sent_up_to=start)
        return cursor

    def joined(self, store: str, seen: str | None = None) -> StoreCursor:
        cursor = self.get(store, seen)
        cursor.topics += 1
        return cursor

    def left(self, store: str) -> None:
        cursor = self.by_store.get(store)
        if cursor is None:
            return
        cursor.topics -= 1
        if len(self.by_store) > self.fold_at:
            self._fold_idle()
            # amortized: the next scan waits until the map has grown as much again
            self.fold_at = max(MAX_IDLE_CURSORS, 2 * len(self.by_store))

    def _fold_idle(self) -> None:
        """Drop the idle cursors (no subscription, no replay), keeping their highest id."""
        idle = [store for store, c in self.by_store.items() if c.topics <= 0 and c.held is None]
        for store in idle:
            cursor = self.by_store.pop(store)
            if cursor.sent_up_to > self.floor:
                self.floor = cursor.sent_up_to


def matches(topic: Topic, event: Event) -> bool:
    return topic[0] == event.get("store") and (topic[1] is None or event.get("entityId") == topic[1])


def merge_by_id(replayed: list[Event], held: list[Event]) -> list[Event]:
    """Both lists are in id order; the result is too, each id once."""
    if not held:
        return replayed
    if not replayed:
        return held
    out: list[Event] = []
    i = j = 0
    while i < len(replayed) and j < len(held):
        a, b = replayed[i]["id"], held[j]["id"]
        if a < b:
            out.append(replayed[i])
            i += 1
        elif b < a:
            out.append(held[j])
            j += 1
        else:
            out.append(held[j])
            i += 1
            j += 1
    out.extend(replayed[i:])
    out.extend(held[j:])
    return out
