"""The fan-out hub: one per process, between the broker (Redis pub/sub) and this process's
connections.

    broker ─► on_event(event) ─► dispatch ─► rooms[store] ∪ rooms[store, id]
                                      │          │
                                      │          └─ may_read(user, data)? once per user per
                                      │             event, not per socket
                                      └─ frame encoded once ─► conn.push(frame)  (no await)
    broker ─► on_control ─► lifetimes (credentials ended, users changed)
    broker ─► on_gap ─► re-check credentials, replay what was missed from each store's history

A connection receives an event when subscribed to its store or entity and its user may read
the entity at that moment. Exactly once and in id order per store, whatever the client
subscribes and however many `since` replays overlap: see `cursor.py`.

Dynamic subscriptions: the hub asks the broker for a store's events when a connection of this
process first watches the store (the subscribe waits until they flow, so nothing published
after its ack can be missed) and releases the store when none does (`broker.py`): a process's
fan-in is what its clients want, not the whole event stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from gateway.auth.principal import Principal
from gateway.events import history
from gateway.metrics import Metrics
from gateway.permissions import may_read
from gateway.protocol import encode_broadcast
from gateway.protocol.websocket import text_frame
from gateway.realtime.cursor import Cursors, Event, StoreCursor, Topic, matches, merge_by_id
from gateway.realtime.broker import Broker, RedisBroker
from gateway.realtime.disconnect import Disconnect
from gateway.realtime.lifetimes import Lifetimes
from gateway.store import control
from gateway.store.redis import Redis

log = logging.getLogger(__name__)

REPLAY_SLICE = 128  # replayed events sent between two turns of the event loop


class TooManySubscriptions(Exception):
    """The connection holds its limit of subscriptions (GATEWAY_REALTIME_MAX_SUBSCRIPTIONS)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Subscriber(Protocol):
    """What the hub needs of a connection; transports implement it."""

    principal: Principal
    # topic -> the id after which it has been offered every event it matches (its "from")
    topics: dict[Topic, str]
    cursors: Cursors

    @property
    def replay_lock(self) -> asyncio.Lock:
        """One `since` replay at a time per connection."""

    @property
    def closed(self) -> bool: ...

    def push(self, broadcast: Broadcast) -> None:
        """Queue an encoded message; must not block (a client that can't keep up is dropped)."""

    def close(self, why: Disconnect) -> None: ...


class Broadcast:
    """One event, encoded once per process: the Engine.IO message text (`42[...]`) for
    queued transports, and the websocket frame bytes, built on first use, for the fast path."""

    __slots__ = ("text", "_ws_frame")

    def __init__(self, text: str) -> None:
        self.text = text
        self._ws_frame: bytes | None = None

    @property
    def ws_frame(self) -> bytes:
        frame = self._ws_frame
        if frame is None:
            frame = self._ws_frame = text_frame(self.text)
        return frame


def encode_event(event: Event) -> Broadcast:
    return Broadcast(encode_broadcast("/", event["type"], event))


class Hub:
    def __init__(self, redis: Redis, *, metrics: Metrics, lifetimes: Lifetimes | None = None,
                 broker: Broker | None = None) -> None:
        self._redis = redis
        self._broker: Broker = broker if broker is not None else RedisBroker(redis)
        self._metrics = metrics
        self.lifetimes = lifetimes if lifetimes is not None else Lifetimes()
        self._rooms: dict[Topic, set[Subscriber]] = {}
        self._last_seen: dict[str, str] = {}  # store -> newest event id this process received
        self._topics_per_store: dict[str, int] = {}  # the broker watches these stores

    # -- connections ---------------------------------------------------------------------
    def register(self, conn: Subscriber) -> None:
        self.lifetimes.register(conn)

    def unregister(self, conn: Subscriber) -> None:
        for topic in list(conn.topics):
            self.leave(conn, topic)
        self.lifetimes.unregister(conn)

    def join(self, conn: Subscriber, topic: Topic) -> None:
        """Call only once the store's channel is watched (`_watch_store`)."""
        if topic in conn.topics:
            return
        store = topic[0]
        self._rooms.setdefault(topic, set()).add(conn)
        self._topics_per_store[store] = self._topics_per_store.get(store, 0) + 1
        seen = self._last_seen.get(store, "")
        cursor = conn.cursors.joined(store, seen)
        # every event of the store after `seen` is still to come through dispatch
        conn.topics[topic] = max(seen, cursor.sent_up_to)

    def leave(self, conn: Subscriber, topic: Topic) -> None:
        if topic not in conn.topics:
            return
        room = self._rooms.get(topic)
        if room is not None:
            room.discard(conn)
            if not room:
                del self._rooms[topic]
        del conn.topics[topic]
        conn.cursors.left(topic[0])
        store = topic[0]
        left = self._topics_per_store.get(store, 0) - 1
        if left > 0:
            self._topics_per_store[store] = left
        else:
            self._topics_per_store.pop(store, None)
            self._broker.release(store)

    async def subscribe(self, conn: Subscriber, topic: Topic, since: str | None, *,
                        limit: int) -> bool | None:
        """Join a topic; with `since`, replay retained events first. Returns `recovered`.

        Raises TooManySubscriptions when joining would give the connection more than `limit`.
        """
        await self._watch_store(topic[0])
        if since is None:
            self._check_limit(conn, topic, limit)
            self.join(conn, topic)
            return None
        async with conn.replay_lock:  # a flood of replays queues behind one
            if conn.closed:
                return False
            self._check_limit(conn, topic, limit)  # others may have joined while we waited
            return await self._replay(conn, topic, since)

    async def _watch_store(self, store: str) -> None:
        """Make sure this process receives the store's events before a topic joins it."""
        if not await self._broker.watch(store):
            return
        # Events published before the subscription never came: the store's topics are
        # complete only from its newest event now (what follows comes through dispatch).
        newest = await history.latest_event_id(self._redis, store)
        if newest is not None and self._last_seen.get(store, "") < newest:
            self._last_seen[store] = newest

    @staticmethod
    def _check_limit(conn: Subscriber, topic: Topic, limit: int) -> None:
        if topic not in conn.topics and len(conn.topics) >= limit:
            raise TooManySubscriptions(limit)

    async def _replay(self, conn: Subscriber, topic: Topic, since: str) -> bool:
        store = topic[0]
        cursor = conn.cursors.get(store, self._last_seen.get(store, ""))
        offered_before = cursor.sent_up_to
        # before this subscribe: the store's topics and where each is complete from
        held_topics = {t: start for t, start in conn.topics.items() if t[0] == store}
        newly = topic not in conn.topics
        cursor.held = []
        self.join(conn, topic)
        # When a subscription the connection already holds covers this one since `since`,
        # everything up to what it was offered needs no second look: a flood of replays of
        # one store reads only what is new.
        covered = any(t in ((store, None), topic) and start <= since
                      for t, start in held_topics.items())
        try:
            replay = await history.events_after(
                self._redis, store, since, skip_to=offered_before if covered else None)
        except BaseException:
            if newly:
                self.leave(conn, topic)
            self._release(conn, cursor)
            raise
        # Events behind what the connection was already offered can't be sent without breaking
        # the store's order; if one was for this subscription alone, say it wasn't recovered.
        recovered = replay.recovered
        for event in replay.events:
            if event["id"] > offered_before:
                break
            if matches(topic, event) and not any(
                    start < event["id"] and matches(t, event) for t, start in held_topics.items()):
                recovered = False
                break
        pending = merge_by_id(replay.events, cursor.held)
        cursor.held = []
        sent = 0
        for index, event in enumerate(pending, 1):
            event_id = event["id"]
            if event_id <= cursor.sent_up_to:
                continue
            if any(matches(t, event) for t in conn.topics if t != topic) or \
                    (event_id > since and topic in conn.topics and matches(topic, event)):
                sent += self._offer(conn, cursor, event, encode_event(event), {})
            if index % REPLAY_SLICE == 0:
                await asyncio.sleep(0)  # others' live events go out between slices
                if conn.closed:
                    break
        self._release(conn, cursor)
        if sent:
            self._metrics.messages_delivered.inc(sent)
        if recovered and topic in conn.topics and since < conn.topics[topic]:
            conn.topics[topic] = since  # it has had everything after `since` now
        return recovered

    def _release(self, conn: Subscriber, cursor: StoreCursor) -> None:
        """Stop holding: offer what arrived meanwhile (synchronously, so nothing slips
        between the last look and the end of holding)."""
        sent = 0
        while cursor.held:
            held, cursor.held = cursor.held, []
            for event in held:
                if event["id"] > cursor.sent_up_to and any(matches(t, event) for t in conn.topics):
                    sent += self._offer(conn, cursor, event, encode_event(event), {})
        cursor.held = None
        if sent:
            self._metrics.messages_delivered.inc(sent)

    def unsubscribe(self, conn: Subscriber, topic: Topic) -> None:
        self.leave(conn, topic)

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self, event: Event) -> None:
        store = event.get("store")
        if not isinstance(store, str):
            return
        event_id = event["id"]
        if self._last_seen.get(store, "") < event_id:
            self._last_seen[store] = event_id
        whole = self._rooms.get((store, None))
        entity_id = event.get("entityId")
        single = self._rooms.get((store, entity_id)) if entity_id else None
        if not whole and not single:
            return
        frame = encode_event(event)
        readable: dict[str, bool] = {}
        delivered = 0
        for conn in _union(whole, single):
            cursor = conn.cursors.get(store)
            if cursor.held is not None:
                cursor.held.append(event)  # a replay is reading the history: after it
                continue
            if cursor.sent_up_to >= event_id:
                continue  # a replay already sent it
            delivered += self._offer(conn, cursor, event, frame, readable)
        if delivered:
            self._metrics.messages_delivered.inc(delivered)
            timestamp = event.get("timestamp")
            if isinstance(timestamp, int):
                self._metrics.delivery_latency.observe(max(0.0, time.time() - timestamp / 1000))

    @staticmethod
    def _offer(conn: Subscriber, cursor: StoreCursor, event: Event, frame: Broadcast,
               readable: dict[str, bool]) -> int:
        """Send the event if the connection's user may read it now; either way it is behind
        the connection's cursor from now on."""
        cursor.sent_up_to = event["id"]
        who = conn.principal
        allowed = readable.get(who.user_id)
        if allowed is None:
            data = event.get("data")
            allowed = readable[who.user_id] = isinstance(data, dict) and may_read(who, data)
        if not allowed:
            return 0
        conn.push(frame)
        return 1

    # -- the broker's callbacks ----------------------------------------------------------
    async def start(self) -> None:
        await self._broker.start(self)

    async def stop(self) -> None:
        await self._broker.stop()

    def on_event(self, event: Event) -> None:
        self._metrics.events_received.inc()
        self.dispatch(event)

    def on_control(self, message: control.ControlMessage) -> None:
        self.lifetimes.on_control(message)

    async def on_gap(self) -> None:
        await self.lifetimes.revalidate(self._redis)
        await self._catch_up()

    def on_unwatched(self, store: str) -> None:
        self._last_seen.pop(store, None)  # set again if it is watched again

    async def _catch_up(self) -> None:
        """After a reconnect: what did this process miss, per store it watches (subscribers
        or not: a store still subscribed claims its events came, see `join`)?

        Replayed oldest first across stores too (ids from one Redis clock compare across
        streams), so a client watching several stores sees them in the order they happened.
        """
        missed: list[Event] = []
        subscribed_at_ms = self._broker.subscribed_at_ms
        for store in {*self._broker.watched(), *(store for store, _ in self._rooms)}:
            since = self._last_seen.get(store)
            if since is None:
                if subscribed_at_ms is None:
                    continue
                # just before that instant: every event since then, none from before
                since = f"{subscribed_at_ms - 1:013d}-999999"
            replay = await history.events_after(self._redis, store, since)
            missed.extend(replay.events)
        missed.sort(key=lambda event: event["id"])
        for event in missed:
            self.dispatch(event)
        if missed:
            log.info("realtime caught up after reconnect", extra={"events": len(missed)})


def _union(a: set[Subscriber] | None, b: set[Subscriber] | None) -> Iterable[Subscriber]:
    """A snapshot of both rooms: a push may close its connection (a slow consumer), which
    leaves the rooms while dispatch is still walking them."""
    if not b:
        return tuple(a) if a else ()
    if not a:
        return tuple(b)
    return [*a, *(conn for conn in b if conn not in a)]
