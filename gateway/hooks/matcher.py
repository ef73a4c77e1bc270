"""Matching: each event in the hook inbox becomes one delivery job per hook that wants it.

A hook wants an event when its store and event pattern match (read from the match index, see
gateway.hooks.store) and its owner may read the event's `data` as an entity (contract §6).
A batch of inbox entries is matched in one script and its jobs queued, with the entries
acknowledged, in another; an entry left pending by a
matcher that died is reclaimed after INBOX_VISIBILITY_MS and matched again, harmlessly (the
delivery ids already exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gateway import codec
from gateway.auth.principal import Principal
from gateway.hooks.delivery import encode_body
from gateway.hooks.queue import MATCH_GROUP, DeliveryQueue
from gateway.hooks.store import Hook, Hooks
from gateway.permissions import may_read
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import stream_read
from gateway.store.users import Users

log = logging.getLogger(__name__)

INBOX_VISIBILITY_MS = 5_000  # matching takes milliseconds: idle this long, its matcher died
PRINCIPAL_TTL_S = 2.0  # how long a hook owner's groups and roles are cached
BATCH = 100


class Matcher:
    def __init__(self, redis: Redis, *, hooks: Hooks, queue: DeliveryQueue, users: Users,
                 consumer: str) -> None:
        self._redis = redis
        self._hooks = hooks
        self._queue = queue
        self._users = users
        self._consumer = consumer
        self._principals: dict[str, tuple[float, Principal | None]] = {}
        self._next_claim = 0.0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.process(await self._read())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hook matcher failed; retrying in 1 s")
                await asyncio.sleep(1)
                # Redis may still be away (a failover): a failure here must not end the loop.
                with contextlib.suppress(Exception):
                    await self._queue.ensure_groups()

    async def _read(self) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + INBOX_VISIBILITY_MS / 3000
            reply = await self._redis.xautoclaim(keys.HOOK_INBOX, MATCH_GROUP, self._consumer,
                                                 INBOX_VISIBILITY_MS, "0-0", count=BATCH)
            if reply[1]:
                log.warning("hook matcher reclaimed inbox entries", extra={"count": len(reply[1])})
                return list(reply[1])
        return stream_read(await self._redis.xreadgroup(
            MATCH_GROUP, self._consumer, {keys.HOOK_INBOX: ">"}, count=BATCH, block=1000))

    async def process(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> int:
        """Queue the entries' deliveries and ack them (two round trips for the batch); returns
        how many deliveries were queued."""
        if not entries:
            return 0
        events: list[tuple[str, dict[str, Any] | None]] = []
        for entry_id, fields in entries:
            entry = entry_id.decode()
            try:
                assert fields is not None
                event_id = fields[b"id"].decode()
                event: dict[str, Any] = {"id": event_id, **codec.unpack(fields[b"e"])}
                str(event["store"]), str(event["type"])
            except Exception:
                log.exception("malformed hook inbox entry dropped", extra={"entry": entry})
                events.append((entry, None))
                continue
            events.append((entry, event))
        parsed = [(entry, event) for entry, event in events if event is not None]
        matches = await self._hooks.matching_many([(str(event["store"]), str(event["type"]))
                                                   for _entry, event in parsed])
        wanted_by = {entry: hooks for (entry, _event), hooks in zip(parsed, matches, strict=True)}
        batch: list[tuple[str, str, bytes, list[str]]] = []
        for entry, maybe_event in events:
            if maybe_event is None:
                batch.append((entry, "", b"", []))
                continue
            wanted = [hook.id for hook in wanted_by[entry]
                      if await self._owner_may_read(hook, maybe_event.get("data"))]
            batch.append((entry, maybe_event["id"], encode_body(maybe_event) if wanted else b"",
                          wanted))
        return await self._queue.enqueue(batch)

    async def _owner_may_read(self, hook: Hook, data: Any) -> bool:
        if not isinstance(data, dict):
            data = {}
        owner = await self._principal(hook.owner)
        return owner is not None and may_read(owner, data)

    async def _principal(self, user_id: str) -> Principal | None:
        now = time.monotonic()
        cached = self._principals.get(user_id)
        if cached and cached[0] > now:
            return cached[1]
        user = await self._users.get(user_id)
        # A disabled owner reads nothing: its hooks get nothing until it is enabled again.
        who = None if user is None or user.disabled else Principal(
            user_id=user.id, login=user.login, groups=user.groups, roles=user.roles)
        if len(self._principals) > 10_000:
            self._principals.clear()
        self._principals[user_id] = (now + PRINCIPAL_TTL_S, who)
        return who
