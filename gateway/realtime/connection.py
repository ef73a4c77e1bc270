"""One realtime client: its protocol session, its user, its subscriptions and its outbox.

The connection is transport-agnostic. Whatever carries it (a websocket, or long-polling
requests) waits on `wake` and drains the session's queue; `push` only appends and sets the
event, so the hub can fan an event out to thousands of connections without awaiting any.

Back-pressure: at most `max_pending` messages, and `max_pending_bytes` of them, may wait for
a transport. A client that falls further behind is disconnected ("slow consumer") instead of
growing memory without bound: a count alone would let a thousand 1 MiB events pile up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from gateway import ids
from gateway.auth.principal import Principal
from gateway.names import valid_store
from gateway.events.history import BadSince
from gateway.metrics import Metrics
from gateway.permissions import may_read
from gateway.protocol import (
    Connected,
    Disconnected,
    EventReceived,
    LocalProtocolError,
    Session,
    Upgraded,
)
from gateway.realtime.disconnect import SLOW_CONSUMER, Disconnect
from gateway.realtime.cursor import Cursors, Topic
from gateway.realtime.hub import Broadcast, TooManySubscriptions

if TYPE_CHECKING:
    from gateway.realtime.service import Realtime


class Sink(Protocol):
    """A transport that writes synchronously (the websocket fast path)."""

    def flush(self) -> None: ...
    def send_broadcast(self, broadcast: Broadcast) -> None: ...

log = logging.getLogger(__name__)

MAX_EVENTS_IN_FLIGHT = 16  # client events of one connection handled at once
MAX_EVENTS_WAITING = 1000  # and waiting for a slot; more are refused at once (429)


def _too_many(limit: int) -> dict[str, Any]:
    return _failure("400", f"At most {limit} subscriptions per connection "
                           "(GATEWAY_REALTIME_MAX_SUBSCRIPTIONS); unsubscribe first")


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "code": code, "message": message}


class Connection:
    __slots__ = ("session", "principal", "transport", "realtime", "topics", "cursors",
                 "_replay_lock", "wake", "pending", "pending_bytes", "closed", "close_reason",
                 "opened_at", "polling", "sink", "_tasks", "_waiting", "__weakref__")

    def __init__(self, session: Session, principal: Principal, transport: str,
                 realtime: Realtime) -> None:
        self.session = session
        self.principal = principal
        self.transport = transport  # "polling" or "websocket"; changes on upgrade
        self.realtime = realtime
        self.topics: dict[Topic, str] = {}  # topic -> the id it is complete from (hub.py)
        self.cursors = Cursors()
        self._replay_lock: asyncio.Lock | None = None
        self.wake = asyncio.Event()
        self.pending = 0
        self.pending_bytes = 0
        self.closed = False
        self.close_reason: str | None = None
        self.opened_at = time.monotonic()
        self.polling = False  # a long-polling GET is waiting on this connection
        self.sink: Sink | None = None  # the websocket fast path writes directly, no task
        self._tasks: set[asyncio.Task[None]] | None = None  # client events in flight
        self._waiting: deque[EventReceived] | None = None  # and those waiting for a slot

    @property
    def replay_lock(self) -> asyncio.Lock:
        """Made on the first `since`: most connections never replay, and 20k idle locks
        would be memory for nothing."""
        if self._replay_lock is None:
            self._replay_lock = asyncio.Lock()
        return self._replay_lock

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def eio(self) -> int:
        return self.session.dialect.eio

    # -- outbound ------------------------------------------------------------------------
    def push(self, broadcast: Broadcast) -> None:
        if self.closed:
            return
        if self.sink is not None:
            self.sink.send_broadcast(broadcast)
            return
        text = broadcast.text
        if (self.pending >= self.realtime.max_pending
                or self.pending_bytes + len(text) > self.realtime.max_pending_bytes):
            self.slow_consumer()
            return
        self.session.send_encoded(text)
        self.pending += 1
        self.pending_bytes += len(text)
        self.wake.set()

    def slow_consumer(self) -> None:
        if self.closed or self.session.closed:
            return  # counted once: closing flushes, and the flush may find the buffer full again
        self.realtime.metrics.slow_disconnects.inc()
        log.warning("slow consumer disconnected",
                    extra={"sid": self.sid, "user": self.principal.user_id,
                           "pending": self.pending, "pending_bytes": self.pending_bytes})
        self.close(SLOW_CONSUMER)

    def attach_sink(self, sink: Sink) -> None:
        """From now on the websocket fast path carries this connection."""
        self.sink = sink
        self.wake.set()  # a long-poll still waiting returns now

    def kick(self) -> None:
        """Get queued packets moving: write them now, or wake the transport's writer."""
        if self.sink is not None:
            self.sink.flush()
        elif self.session.has_data_to_send or self.closed:
            self.wake.set()

    def drained(self) -> None:
        """The transport took everything queued."""
        self.pending = 0
        self.pending_bytes = 0

    def close(self, why: Disconnect) -> None:
        """End the connection as `why` says (`disconnect.py`): when the client must stay
        away, `41` then `1`; otherwise no packet at all, a lost connection that every
        socket.io client reconnects from by itself."""
        if self.session.closed:
            return
        if why.stay_away:
            for namespace in self.session.namespaces:
                self.session.disconnect_namespace(namespace)
            self.session.close(why.reason)
        else:
            self.session.abandon(why.reason)
        self.handle_events()
        self.wake.set()

    # -- inbound -------------------------------------------------------------------------
    def handle_events(self) -> None:
        for event in self.session.events_received():
            if isinstance(event, EventReceived):
                self._accept_client_event(event)
            elif isinstance(event, Disconnected):
                self._on_disconnected(event.reason, event.error)
            elif isinstance(event, Upgraded):
                self.transport = "websocket"
                self.realtime.on_transport_change(self, "polling", "websocket")
            elif isinstance(event, Connected):
                pass  # the handshake was authenticated; nothing more to check
        self.kick()

    def _on_disconnected(self, reason: str, error: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.realtime.forget(self)
        log.info("realtime disconnected", extra={
            "sid": self.sid, "user": self.principal.user_id, "reason": reason,
            "error": str(error) if error else None,
            "seconds": round(time.monotonic() - self.opened_at, 1)})
        self.wake.set()

    def _accept_client_event(self, event: EventReceived) -> None:
        """Run it now, or after those in flight: a client that sends thousands of events at
        once gets a bounded number of tasks and a bounded queue, then 429s without a task."""
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        if len(tasks) < MAX_EVENTS_IN_FLIGHT:
            self._start(event)
            return
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = deque()
        if len(waiting) < MAX_EVENTS_WAITING:
            waiting.append(event)
            return
        self._answer(event, _failure(
            "429", f"{MAX_EVENTS_IN_FLIGHT + MAX_EVENTS_WAITING} events already wait on this "
                   "connection; wait for their acknowledgements before sending more"))

    def _start(self, event: EventReceived) -> None:
        task = asyncio.create_task(self._on_client_event(event))
        assert self._tasks is not None
        self._tasks.add(task)
        task.add_done_callback(self._client_event_done)

    def _client_event_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if self._waiting and not self.closed:
            self._start(self._waiting.popleft())

    async def _on_client_event(self, event: EventReceived) -> None:
        try:
            refusal = await self._over_rate_limit()
            if refusal is not None:
                answer = refusal
            elif event.name == "subscribe":
                answer = await self._subscribe(event.args)
            elif event.name == "unsubscribe":
                answer = self._unsubscribe(event.args)
            else:
                answer = _failure("400", f"Unknown event {event.name!r}: use subscribe or unsubscribe")
        except Exception:
            log.exception("realtime event failed", extra={"sid": self.sid, "event": event.name})
            answer = _failure("500", "Internal error; try again")
        self._answer(event, answer)

    def _answer(self, event: EventReceived, answer: dict[str, Any]) -> None:
        if event.ack_id is not None and not self.session.closed:
            try:
                self.session.send_ack(event.namespace, event.ack_id, answer)
            except LocalProtocolError:
                return  # the namespace was left meanwhile
            self.kick()

    async def _over_rate_limit(self) -> dict[str, Any] | None:
        """Client events count against the user's REST rate limits (contract §2)."""
        limiter = self.realtime.ratelimiter
        if limiter is None:
            return None
        decision = await limiter.admit(self.principal.user_id)
        if decision.admitted:
            return None
        return _failure("429", limiter.refusal(decision).message)

    def _topic(self, args: tuple[Any, ...]) -> tuple[Topic, str | None] | dict[str, Any]:
        spec = args[0] if args else None
        if not isinstance(spec, dict):
            return _failure("400", 'Send an object: {"store": "orders"} or {"store": …, "id": …}')
        store, entity_id, since = spec.get("store"), spec.get("id"), spec.get("since")
        if not valid_store(store):
            return _failure("400", "'store' must be a store name")
        if entity_id is not None and not ids.is_object_id(entity_id):
            return _failure("400", "'id' must be an entity id (24 lowercase hex characters)")
        if since is not None and not isinstance(since, str):
            return _failure("400", "'since' must be an event id (string)")
        return (store, entity_id), since

    async def _subscribe(self, args: tuple[Any, ...]) -> dict[str, Any]:
        parsed = self._topic(args)
        if isinstance(parsed, dict):
            return parsed
        topic, since = parsed
        store, entity_id = topic
        limit = self.realtime.max_subscriptions
        if topic not in self.topics and len(self.topics) >= limit:
            return _too_many(limit)
        if entity_id is not None:
            entity = await self.realtime.entities.get(store, entity_id)
            if entity is None or not may_read(self.principal, entity):
                return _failure("404", f"No entity {entity_id} in {store!r} that you may read")
        if self.closed:
            return _failure("400", "The connection is closed")
        try:
            recovered = await self.realtime.hub.subscribe(self, topic, since, limit=limit)
        except BadSince:
            return _failure("400", f"'since' {since!r} is not an event id")
        except TooManySubscriptions:  # others got in while this one waited
            return _too_many(limit)
        answer: dict[str, Any] = {"success": True}
        if since is not None:
            answer["recovered"] = recovered
        return answer

    def _unsubscribe(self, args: tuple[Any, ...]) -> dict[str, Any]:
        parsed = self._topic(args)
        if isinstance(parsed, dict):
            return parsed
        self.realtime.hub.unsubscribe(self, parsed[0])
        return {"success": True}
