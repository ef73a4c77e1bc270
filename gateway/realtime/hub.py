"""The fan-out hub: one per process, between Redis pub/sub and this process's connections.

    Redis PUBLISH gw:events ─► listener ─► dispatch(event) ─► rooms[store] ∪ rooms[store, id]
                                                │               │
                                                │               └─ may_read(user, data)? once per
                                                │                  user per event, not per socket
                                                └─ frame encoded once ─► conn.push(frame)  (no await)

A connection receives an event when subscribed to its store or entity and its user may read
the entity. Each connection remembers the last event id it was sent per store: recovery
(`since`) and live delivery can overlap without duplicates, since ids sort as strings.

The listener reconnects with backoff when Redis goes away; after it is back, it replays from
each store's history what this process missed while disconnected, so subscribers see no gap as
long as the events are still retained.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway import codec
from gateway.auth.principal import Principal
from gateway.events import history
from gateway.events.pipeline import decode_published
from gateway.metrics import Metrics
from gateway.permissions import may_read
from gateway.protocol import encode_broadcast
from gateway.protocol.websocket import text_frame
from gateway.realtime.disconnect import CREDENTIAL_REVOKED, Disconnect
from gateway.store import keys
from gateway.store.redis import Redis

log = logging.getLogger(__name__)

Topic = tuple[str, str | None]
MAX_BURST = 256  # events dispatched between two writes to a socket, at most  # (store, entity id or None for the whole store)


class Subscriber(Protocol):
    """What the hub needs of a connection; transports implement it."""

    principal: Principal
    last_ids: dict[str, str]  # store -> id of the last event sent to it
    topics: set[Topic]
    recovering: dict[str, list[tuple[str, dict[str, Any]]]]  # store -> buffered live events

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


def encode_event(event: dict[str, Any]) -> Broadcast:
    return Broadcast(encode_broadcast("/", event["type"], event))


class Hub:
    def __init__(self, redis: Redis, *, metrics: Metrics) -> None:
        self._redis = redis
        self._metrics = metrics
        self._rooms: dict[Topic, set[Subscriber]] = {}
        self._by_session: dict[str, set[Subscriber]] = {}
        self._last_seen: dict[str, str] = {}  # store -> newest event id this process received
        # Redis's clock (ms) when the listener last subscribed: a store with no event seen
        # since then had none until the connection broke, so its catch-up starts there.
        self._subscribed_at_ms: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    # -- connections ---------------------------------------------------------------------
    def register(self, conn: Subscriber) -> None:
        digest = conn.principal.session_digest
        if digest:
            self._by_session.setdefault(digest, set()).add(conn)

    def unregister(self, conn: Subscriber) -> None:
        for topic in list(conn.topics):
            self.leave(conn, topic)
        digest = conn.principal.session_digest
        if digest and digest in self._by_session:
            self._by_session[digest].discard(conn)
            if not self._by_session[digest]:
                del self._by_session[digest]

    def join(self, conn: Subscriber, topic: Topic) -> None:
        self._rooms.setdefault(topic, set()).add(conn)
        conn.topics.add(topic)

    def leave(self, conn: Subscriber, topic: Topic) -> None:
        room = self._rooms.get(topic)
        if room is not None:
            room.discard(conn)
            if not room:
                del self._rooms[topic]
        conn.topics.discard(topic)

    async def subscribe(self, conn: Subscriber, topic: Topic, since: str | None) -> bool | None:
        """Join a topic; with `since`, replay retained events first. Returns `recovered`."""
        store = topic[0]
        if since is None:
            self.join(conn, topic)
            return None
        # Buffer live events for this store while the history is read, then replay both in
        # order: anything the history misses arrives live after the read (gap-free), and
        # anything in both is dropped by the last-id check (duplicate-free).
        conn.recovering.setdefault(store, [])
        self.join(conn, topic)
        try:
            replay = await history.events_after(self._redis, store, since)
        except BaseException:
            conn.recovering.pop(store, None)
            self.leave(conn, topic)
            raise
        # The client asked for everything after `since` on this topic: replay it all, even
        # what another of its topics in the store already delivered.
        # The live filter moves up to the last event replayed, never to `since` itself: a
        # `since` from another store, or the future, is not an id this store's later events
        # must exceed (they would be held back until they did).
        replayed_up_to = ""
        for event in replay.events:
            if topic[1] is None or event.get("entityId") == topic[1]:
                self._send(conn, event, encode_event(event), {}, replay=True)
            replayed_up_to = event["id"]
        if conn.last_ids.get(store, "") < replayed_up_to:
            conn.last_ids[store] = replayed_up_to
        for _, event in conn.recovering.pop(store, []):
            self._deliver_one(conn, event)
        return replay.recovered

    def unsubscribe(self, conn: Subscriber, topic: Topic) -> None:
        self.leave(conn, topic)

    def close_session(self, digest: str) -> None:
        for conn in list(self._by_session.get(digest, ())):
            conn.close(CREDENTIAL_REVOKED)

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self, event: dict[str, Any]) -> None:
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
            buffer = conn.recovering.get(store)
            if buffer is not None:
                buffer.append((event_id, event))
                continue
            delivered += self._send(conn, event, frame, readable)
        if delivered:
            self._metrics.messages_delivered.inc(delivered)
            timestamp = event.get("timestamp")
            if isinstance(timestamp, int):
                self._metrics.delivery_latency.observe(max(0.0, time.time() - timestamp / 1000))

    def _deliver_one(self, conn: Subscriber, event: dict[str, Any]) -> None:
        store, entity_id = event["store"], event.get("entityId")
        if (store, None) in conn.topics or (entity_id and (store, entity_id) in conn.topics):
            if self._send(conn, event, encode_event(event), {}):
                self._metrics.messages_delivered.inc()

    @staticmethod
    def _send(conn: Subscriber, event: dict[str, Any], frame: Broadcast,
              readable: dict[str, bool], *, replay: bool = False) -> int:
        store, event_id = event["store"], event["id"]
        if not replay and conn.last_ids.get(store, "") >= event_id:
            return 0  # already sent (recovery and live overlapped)
        who = conn.principal
        allowed = readable.get(who.user_id)
        if allowed is None:
            data = event.get("data")
            allowed = readable[who.user_id] = isinstance(data, dict) and may_read(who, data)
        if replay:
            if conn.last_ids.get(store, "") < event_id:
                conn.last_ids[store] = event_id
        else:
            conn.last_ids[store] = event_id
        if not allowed:
            return 0
        conn.push(frame)
        return 1

    # -- the Redis listener --------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="hub-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _listen_forever(self) -> None:
        delay = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.EVENTS_CHANNEL, keys.CONTROL_CHANNEL)
                seconds, micros = await self._redis.time()
                if not first:
                    await self._catch_up()
                first = False
                self._subscribed_at_ms = seconds * 1000 + micros // 1000
                self.connected.set()
                delay = 0.1
                log.info("realtime listener subscribed")
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None:
                        continue
                    # Take whatever else already arrived and dispatch the burst without
                    # yielding, so each socket gets one write for all of it (fastws.Coalescer).
                    burst = [message]
                    while len(burst) < MAX_BURST:
                        more = await pubsub.get_message(timeout=0.0)
                        if more is None:
                            break
                        burst.append(more)
                    for message in burst:
                        self._on_message(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("realtime listener lost Redis; reconnecting",
                            extra={"error": repr(exc), "retry_in_s": round(delay, 2)})
            except Exception:
                self.connected.clear()
                log.exception("realtime listener failed; restarting")
            finally:
                try:
                    # redis-py leaves PubSub.aclose unannotated.
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:
                    pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)  # capped low: subscribers wait on this, not just readiness

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        data = message["data"]
        try:
            if channel == keys.EVENTS_CHANNEL.encode():
                self._metrics.events_received.inc()
                self.dispatch(decode_published(data))
            elif channel == keys.CONTROL_CHANNEL.encode():
                control = codec.unpack(data)
                if "revoke" in control:
                    self.close_session(control["revoke"])
        except Exception:
            log.exception("bad realtime message", extra={"channel": channel})

    async def _catch_up(self) -> None:
        """After a reconnect: what did this process miss, per store with subscribers?

        Replayed oldest first across stores too (ids from one Redis clock compare across
        streams), so a client watching several stores sees them in the order they happened.
        """
        missed: list[dict[str, Any]] = []
        for store in {store for store, _ in self._rooms}:
            since = self._last_seen.get(store)
            if since is None:
                if self._subscribed_at_ms is None:
                    continue
                # just before that instant: every event since then, none from before
                since = f"{self._subscribed_at_ms - 1:013d}-999999"
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
