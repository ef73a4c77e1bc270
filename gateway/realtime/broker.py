"""The message layer under the realtime hub: the interface, and its Redis pub/sub implementation
(as centrifuge pairs `broker.go` with `broker_redis.go`).

The hub asks for a store's events with `watch` (it returns once they flow: nothing published
after that can be missed) and lets go with `release`; the broker calls the hub back for each
event and control message and — before any message that follows a break in its connection —
`on_gap`, since whatever was published during the break never reaches a pub/sub subscriber and
must be read from the history.

`RedisBroker` serves one Redis (a URL, the embedded one, or Sentinel's current master): one
channel per store (`gw:events:<store>`), subscribed while a connection of this process watches
the store and `IDLE_STORE_S` after, against churn; `gw:control` always. A Redis Cluster broker
(sharded pub/sub) would sit beside it with the same interface.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.events.pipeline import decode_published
from gateway.exceptions import StoreUnavailable
from gateway.realtime.cursor import Event
from gateway.store import control, keys
from gateway.store.redis import Redis

log = logging.getLogger(__name__)

MAX_BURST = 256  # messages handed over between two turns of the loop, at most
WATCH_TIMEOUT_S = 5.0  # a watch waits this long for Redis to confirm a new store's channel
IDLE_STORE_S = 30.0  # a store no connection watches stays subscribed this long (churn)
_EVENTS_PREFIX = keys.EVENTS_CHANNEL_PREFIX.encode()


class BrokerHandler(Protocol):
    """What the broker calls back (the hub)."""

    def on_event(self, event: Event) -> None:
        """One event of a watched store; a burst of them comes without a turn of the loop."""

    def on_control(self, message: control.ControlMessage) -> None: ...

    async def on_gap(self) -> None:
        """The connection broke and is back: messages published meanwhile are lost."""

    def on_unwatched(self, store: str) -> None:
        """The store's events stopped flowing (released and idle)."""


class Broker(Protocol):
    connected: asyncio.Event  # set while subscribed
    subscribed_at_ms: int | None  # Redis's clock when the listener last subscribed

    def watched(self) -> Iterable[str]: ...
    async def start(self, handler: BrokerHandler) -> None: ...
    async def stop(self) -> None: ...

    async def watch(self, store: str) -> bool:
        """Return once the store's events flow to the handler; True when they did not before
        this call (they start now: nothing published earlier came). Raises StoreUnavailable
        if Redis does not confirm in time."""

    def release(self, store: str) -> None:
        """No connection watches the store any more (it may stay subscribed a while)."""


class RedisBroker:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.connected = asyncio.Event()
        self.subscribed_at_ms: int | None = None
        self._handler: BrokerHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        # store -> done once Redis confirmed its channel's subscription
        self._channels: dict[str, asyncio.Future[None]] = {}
        self._idle_since: dict[str, float] = {}  # released stores -> when

    def watched(self) -> Iterable[str]:
        return tuple(self._channels)

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._listen_forever(), name="broker-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def watch(self, store: str) -> bool:
        self._idle_since.pop(store, None)
        confirmed = self._channels.get(store)
        if confirmed is None:
            confirmed = self._channels[store] = asyncio.get_running_loop().create_future()
            if self._pubsub is not None and self.connected.is_set():
                try:
                    await self._pubsub.subscribe(keys.events_channel(store))
                except (RedisError, OSError):
                    pass  # the listener subscribes every watched store when it reconnects
        if confirmed.done():
            return False
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), WATCH_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise StoreUnavailable() from None
        return True

    def release(self, store: str) -> None:
        if store in self._channels:
            self._idle_since[store] = time.monotonic()

    # -- the listener --------------------------------------------------------------------
    async def _listen_forever(self) -> None:
        assert self._handler is not None
        handler = self._handler
        delay = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub()  # subscribe confirmations activate watched stores
            watch = _ReconnectWatch(pubsub)
            try:
                await pubsub.subscribe(keys.CONTROL_CHANNEL,
                                       *(keys.events_channel(store) for store in self._channels))
                self._pubsub = pubsub
                seconds, micros = await self._redis.time()
                if not first:
                    await handler.on_gap()  # reads subscribed_at_ms: the instant before the break
                self.subscribed_at_ms = seconds * 1000 + micros // 1000
                first = False
                self.connected.set()
                delay = 0.1
                log.info("realtime listener subscribed")
                while True:
                    # a short wait: a reconnect redis-py made inside it is caught up promptly
                    message = await pubsub.get_message(timeout=1.0)
                    if watch.reconnected:
                        await self._after_gap(watch, handler)
                    if message is None:
                        await self._drop_idle_stores(pubsub, handler)
                        continue
                    # Take whatever else already arrived and hand the burst over without
                    # yielding, so each socket gets one write for all of it (fastws.Coalescer).
                    burst = [message]
                    while len(burst) < MAX_BURST:
                        more = await pubsub.get_message(timeout=0.0)
                        if watch.reconnected:  # `more` came after a gap: what came before first
                            for message in burst:
                                self._on_message(message, handler)
                            burst = []
                            await self._after_gap(watch, handler)
                        if more is None:
                            break
                        burst.append(more)
                    for message in burst:
                        self._on_message(message, handler)
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
                self._pubsub = None
                try:
                    # redis-py leaves PubSub.aclose unannotated.
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:
                    pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)  # capped low: subscribers wait on this, not just readiness

    @staticmethod
    async def _after_gap(watch: _ReconnectWatch, handler: BrokerHandler) -> None:
        """redis-py reconnected the pub/sub connection by itself: whatever was published in
        between never reached us. Do what a reconnect of our own does."""
        watch.reconnected = False
        log.warning("realtime listener's connection was re-established; catching up")
        await handler.on_gap()

    async def _drop_idle_stores(self, pubsub: Any, handler: BrokerHandler) -> None:
        """Unsubscribe from stores released a while ago (while nothing else is going on)."""
        if not self._idle_since:
            return
        now = time.monotonic()
        idle = [store for store, since in self._idle_since.items()
                if now - since >= IDLE_STORE_S and self._channels[store].done()]
        if not idle:
            return
        for store in idle:
            del self._idle_since[store]
            del self._channels[store]
            handler.on_unwatched(store)
        # A later watch of one of them subscribes again, after this on the same connection.
        await pubsub.unsubscribe(*(keys.events_channel(store) for store in idle))

    def _on_message(self, message: dict[str, Any], handler: BrokerHandler) -> None:
        channel = message["channel"]
        kind = message["type"]
        try:
            if kind == "subscribe" and channel.startswith(_EVENTS_PREFIX):
                confirmed = self._channels.get(channel[len(_EVENTS_PREFIX):].decode())
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind != "message":
                return
            elif channel.startswith(_EVENTS_PREFIX):
                handler.on_event(decode_published(message["data"]))
            elif channel == keys.CONTROL_CHANNEL.encode():
                signal = control.decode(message["data"])
                if signal is not None:
                    handler.on_control(signal)
        except Exception:
            log.exception("bad realtime message", extra={"channel": channel})


class _ReconnectWatch:
    """Notices redis-py re-establishing a pub/sub connection behind our back.

    With retries configured, `PubSub` reconnects and re-subscribes inside `get_message` (its
    `on_connect`) and carries on as if nothing happened, but messages published meanwhile are
    gone. Its first connect has no channels yet; any later one with channels is a reconnect.
    """

    def __init__(self, pubsub: Any) -> None:
        self.reconnected = False
        self._resubscribe = pubsub.on_connect
        pubsub.on_connect = self._on_connect
        self._pubsub = pubsub

    async def _on_connect(self, connection: Any) -> None:
        if self._pubsub.channels:
            self.reconnected = True
        await self._resubscribe(connection)
