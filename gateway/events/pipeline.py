"""The event pipeline: a write and its event commit in one Lua script, or not at all.

    write ──► commit script (atomic in Redis) ──┬─► entity key + creation index   (the write)
                                                ├─► gw:history:<store>  stream     (recovery, `since`)
                                                ├─► PUBLISH gw:events:<store>      (realtime fan-out)
                                                └─► gw:hooks:inbox      stream     (hook matching)

One script means a crash can't leave a change without its event or an event without its change:
Redis runs it to the end or not at all, and the AOF records its effects as one transaction.

The event id is the history stream's id, zero-padded to sort as a string (events.ids). The
payload (the event without its id, msgpack) is built once in Python and copied as bytes into
the stream, the pub/sub message and the hook inbox; the published message is
`msgpack(event_id) + payload`, so subscribers decode two objects and add the id themselves.

Updates and deletes are optimistic: the script checks the entity is still the exact bytes the
caller read, and the caller retries on a conflict, so concurrent PATCHes never lose a field.
The hook inbox is written only while hooks exist (gw:hooks:count > 0), so a gateway without
hooks pays nothing for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.typing import EncodableT, KeyT

from gateway import codec
from gateway.events.ids import LUA_FORMAT
from gateway.exceptions import StoreUnavailable
from gateway.metrics import Metrics
from gateway.store import keys
from gateway.store.redis import Redis

_COMMIT = LUA_FORMAT + """
local mode = ARGV[1]
if mode ~= 'publish' then
  local current = redis.call('GET', KEYS[1])
  if mode == 'create' then
    if current then return {0, 'exists'} end
  elseif (not current) or current ~= ARGV[2] then
    return {0, 'changed'}
  end
  if mode == 'delete' then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[3])
    if mode == 'create' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4]) end
  end
end
local id = event_id(redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[7], '*', 'e', ARGV[6]))
redis.call('PUBLISH', ARGV[8], cmsgpack.pack(id) .. ARGV[6])
if tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then
  redis.call('XADD', KEYS[4], '*', 'id', id, 'e', ARGV[6])
end
return {1, id}
"""


class WriteConflict(Exception):
    """The entity changed (or appeared, or vanished) between read and commit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Committed:
    event_id: str
    event: dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def build_event(kind: str, store: str, entity_id: str | None, data: dict[str, Any],
                changes: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "store": store, "entityId": entity_id, "data": data}
    if changes is not None:
        event["changes"] = changes
    event["timestamp"] = now_ms()
    return event


def decode_published(message: bytes) -> dict[str, Any]:
    """The event from a gw:events message: `msgpack(id) + msgpack(payload)`."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(message)
    event_id = next(unpacker)
    payload = next(unpacker)
    return {"id": event_id, **payload}


WAIT_TIMEOUT_MS = 1000  # how long a write waits for its replicas (GATEWAY_REDIS_WAIT_REPLICAS)


class EventPipeline:
    def __init__(self, redis: Redis, *, history_size: int, metrics: Metrics,
                 wait_replicas: int = 0) -> None:
        self._redis = redis
        self._history_size = history_size
        self._metrics = metrics
        self._wait_replicas = wait_replicas
        self._commit = redis.register_script(_COMMIT)

    async def commit(
        self, mode: str, event: dict[str, Any], *, store: str, entity_id: str = "",
        expected: bytes = b"", new_value: bytes = b"", created_ms: int = 0,
    ) -> Committed:
        """Run the write (`create`, `update`, `delete`, or none for `publish`) with its event."""
        payload = codec.pack(event)
        script_keys: list[KeyT] = [keys.entity(store, entity_id), keys.entity_index(store),
                                   keys.history(store), keys.HOOK_INBOX, keys.HOOK_COUNT]
        args: list[EncodableT] = [mode, expected, new_value, entity_id, created_ms, payload,
                                  self._history_size, keys.events_channel(store)]
        if self._wait_replicas:
            ok, result = await self._commit_replicated(script_keys, args)
        else:
            ok, result = await self._commit(keys=script_keys, args=args)
        if not ok:
            raise WriteConflict(result.decode() if isinstance(result, bytes) else str(result))
        event_id = result.decode() if isinstance(result, bytes) else str(result)
        self._metrics.events_published.labels(event["type"]).inc()
        return Committed(event_id, {"id": event_id, **event})

    async def _commit_replicated(self, script_keys: list[KeyT],
                                 args: list[EncodableT]) -> Any:
        """The commit, then WAIT on the same connection (WAIT counts the replicas that have
        this connection's writes): acknowledged only once that many replicas have it, so a
        failover to one of them loses nothing acknowledged. Fewer in time: StoreUnavailable
        (503) — the write may still survive, as after any timeout."""
        async with self._redis.client() as connection:
            reply = await self._commit(keys=script_keys, args=args, client=connection)
            if reply[0]:
                replicas = await connection.wait(self._wait_replicas, WAIT_TIMEOUT_MS)
                if replicas < self._wait_replicas:
                    raise StoreUnavailable(
                        f"the write reached {replicas} of {self._wait_replicas} replicas in "
                        f"{WAIT_TIMEOUT_MS} ms (GATEWAY_REDIS_WAIT_REPLICAS)")
        return reply
