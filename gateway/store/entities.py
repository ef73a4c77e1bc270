"""Entities: one msgpack value per entity, a sorted set per store indexing them by creation time.

Writes go through the event pipeline so each one commits with its event. Listing walks the
creation index in chunks and filters by read permission as it goes: a page costs a few round
trips and at most a chunk of entities in memory, however large the store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway import codec, ids
from gateway.auth.principal import Principal
from gateway.events.pipeline import Committed, EventPipeline, WriteConflict, build_event
from gateway.permissions import may_read
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes, zset_members

SYSTEM_FIELDS = ("_id", "owner", "group", "access", "branch")
CHUNK = 500
MAX_RETRIES = 50
MAX_BACKOFF_S = 0.05


class EntityGone(Exception):
    """The entity disappeared while we were changing it."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """Creation-time bounds in ms, inclusive; None means open."""

    start: int | None = None
    end: int | None = None

    def redis_range(self) -> tuple[str, str]:
        return (str(self.start) if self.start is not None else "-inf",
                str(self.end) if self.end is not None else "+inf")


class _KeyedLocks:
    """One asyncio.Lock per key while anyone holds or waits for it; dropped when idle."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Entities:
    def __init__(self, redis: Redis, pipeline: EventPipeline) -> None:
        self._redis = redis
        self._pipeline = pipeline
        # Writes to one entity from this process take turns: optimistic retries then only
        # race other processes, so a burst of PATCHes here can't starve one of them into a 409.
        self._writing = _KeyedLocks()

    async def get(self, store: str, entity_id: str) -> dict[str, Any] | None:
        raw = as_bytes(await self._redis.get(keys.entity(store, entity_id)))
        return codec.unpack(raw) if raw else None

    async def create(self, store: str, entity: dict[str, Any]) -> Committed:
        """Store a new entity (system fields already set) with its `entity.created` event."""
        created_ms = int(time.time() * 1000)
        while True:
            entity_id = ids.object_id(created_ms / 1000)
            stored = {"_id": entity_id, **entity}
            event = build_event("entity.created", store, entity_id, stored)
            try:
                return await self._pipeline.commit(
                    "create", event, store=store, entity_id=entity_id,
                    new_value=codec.pack(stored), created_ms=created_ms)
            except WriteConflict:
                continue  # an id collision (practically never): draw another

    async def change(
        self, store: str, entity_id: str,
        compute: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]] | None],
    ) -> Committed:
        """Read-modify-write with retries. `compute(current)` returns (new entity, changes),
        or None to delete; it may raise to refuse (e.g. Forbidden) and nothing is written."""
        async with self._writing.hold(keys.entity(store, entity_id)):
            for attempt in range(MAX_RETRIES):
                raw = as_bytes(await self._redis.get(keys.entity(store, entity_id)))
                if raw is None:
                    raise EntityGone(entity_id)
                current = codec.unpack(raw)
                outcome = compute(current)
                if outcome is None:
                    event = build_event("entity.deleted", store, entity_id, current)
                    mode, new_value = "delete", b""
                else:
                    updated, changes = outcome
                    event = build_event("entity.updated", store, entity_id, updated, changes)
                    mode, new_value = "update", codec.pack(updated)
                try:
                    return await self._pipeline.commit(
                        mode, event, store=store, entity_id=entity_id, expected=raw,
                        new_value=new_value)
                except WriteConflict:
                    # Another process won; back off with jitter so the racers spread out.
                    await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.001 * 2**attempt)))
        raise WriteConflict("too many concurrent writes to this entity; try again")

    async def scan(self, store: str, bounds: Bounds, who: Principal) -> AsyncIterator[dict[str, Any]]:
        """Readable entities in creation order, fetched a chunk at a time."""
        low, high = bounds.redis_range()
        offset = 0
        while True:
            entity_ids = zset_members(await self._redis.zrangebyscore(
                keys.entity_index(store), low, high, start=offset, num=CHUNK))
            if not entity_ids:
                return
            offset += len(entity_ids)
            values = await self._redis.mget([keys.entity(store, i.decode()) for i in entity_ids])
            for raw in values:
                if raw is None:
                    continue  # deleted between the two reads
                entity = codec.unpack(as_bytes(raw))
                if may_read(who, entity):
                    yield entity
            if len(entity_ids) < CHUNK:
                return

    async def page(self, store: str, bounds: Bounds, who: Principal, *, offset: int,
                   limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []  # the scan below checks the limit only after taking an item
        if who.is_admin:
            return await self._admin_page(store, bounds, offset, limit)
        items: list[dict[str, Any]] = []
        skipped = 0
        async for entity in self.scan(store, bounds, who):
            if skipped < offset:
                skipped += 1
                continue
            items.append(entity)
            if len(items) >= limit:
                break
        return items

    async def _admin_page(self, store: str, bounds: Bounds, offset: int,
                          limit: int) -> list[dict[str, Any]]:
        """An admin reads everything, so the index pages directly: no scan at all."""
        low, high = bounds.redis_range()
        entity_ids = zset_members(await self._redis.zrangebyscore(
            keys.entity_index(store), low, high, start=offset, num=limit))
        if not entity_ids:
            return []
        values = await self._redis.mget([keys.entity(store, i.decode()) for i in entity_ids])
        return [codec.unpack(as_bytes(raw)) for raw in values if raw is not None]

    async def meta(self, store: str, bounds: Bounds, who: Principal) -> dict[str, Any]:
        if who.is_admin:
            low, high = bounds.redis_range()
            index = keys.entity_index(store)
            total = await self._redis.zcount(index, low, high)
            first_ids = zset_members(
                await self._redis.zrangebyscore(index, low, high, start=0, num=1))
            last_ids = zset_members(
                await self._redis.zrevrangebyscore(index, high, low, start=0, num=1))
            return {"total": total,
                    "first": await self.get(store, first_ids[0].decode()) if first_ids else None,
                    "last": await self.get(store, last_ids[0].decode()) if last_ids else None}
        total = 0
        first: dict[str, Any] | None = None
        last: dict[str, Any] | None = None
        async for entity in self.scan(store, bounds, who):
            total += 1
            first = first or entity
            last = entity
        return {"total": total, "first": first, "last": last}
