"""Hook subscriptions in Redis: records, the owner index, and the match index.

    gw:hooks                       hash   hook id -> msgpack {id, target_url, event, store, secret, owner, createdAt}
    gw:user-hooks:<user>           set    the user's hook ids
    gw:hooks:ix:<store|*>:<event>  set    hook ids by what they match, so matching an event reads
                                          a few small sets instead of scanning every hook
    gw:hooks:count                 int    how many hooks exist; the event pipeline fills the hook
                                          inbox only while it is above 0

Creating and deleting change all of them in one script. Deleting also drops the hook's delivery
log and its scheduled retries, so nothing is delivered to it afterwards.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from typing import Any

from gateway import codec, ids
from gateway.hooks import signing
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes

# The hooks matching each of several events, in one round trip. KEYS: hooks. ARGV: per event,
# n and its n candidate index keys. Returns per event the records of its hooks.
_MATCHING = """
local result, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local records = {}
  local ids = redis.call('SUNION', unpack(ARGV, i + 1, i + n))
  if #ids > 0 then
    for _, record in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do
      if record then records[#records + 1] = record end
    end
  end
  result[#result + 1] = records
  i = i + 1 + n
end
return result
"""

_CREATE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return 1
"""

# KEYS: hooks, user-hooks, index, count, log, delayed; ARGV: hook id, delivery/attempts prefixes.
# Delivery keys are computed here (single-node Redis: the gateway does not run on Cluster).
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('DECR', KEYS[4]) < 0 then redis.call('SET', KEYS[4], 0) end
for _, did in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  redis.call('DEL', ARGV[2] .. did, ARGV[3] .. did)
  redis.call('ZREM', KEYS[6], did)
end
redis.call('DEL', KEYS[5])
return 1
"""


@dataclass(frozen=True, slots=True)
class Hook:
    id: str
    target_url: str
    event: str
    store: str | None
    secret: str
    owner: str
    created_at: int

    def public(self) -> dict[str, Any]:
        """The hook as the API shows it after creation: without its secret."""
        return {"id": self.id, "target_url": self.target_url, "event": self.event,
                "store": self.store, "owner": self.owner, "createdAt": self.created_at}

    def record(self) -> dict[str, Any]:
        return {**self.public(), "secret": self.secret}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Hook:
        return cls(id=record["id"], target_url=record["target_url"], event=record["event"],
                   store=record.get("store"), secret=record["secret"], owner=record["owner"],
                   created_at=record["createdAt"])

    @property
    def index_key(self) -> str:
        return keys.hook_index(self.store or "*", self.event)


def candidate_index_keys(store: str, event_type: str) -> list[str]:
    """The index sets whose hooks may want an event: its store or `*`, times its type,
    each `<prefix>.*` of its type, and `*`."""
    patterns = [event_type, "*"]
    parts = event_type.split(".")
    patterns += [".".join(parts[:n]) + ".*" for n in range(1, len(parts))]
    return [keys.hook_index(s, p) for s in (store, "*") for p in patterns]


class Hooks:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._delete = redis.register_script(_DELETE)
        self._matching = redis.register_script(_MATCHING)

    async def create(self, *, owner: str, target_url: str, event: str, store: str | None) -> Hook:
        hook = Hook(id=ids.object_id(), target_url=target_url, event=event, store=store,
                    secret=signing.generate_secret(), owner=owner,
                    created_at=int(time.time() * 1000))
        await self._create(
            keys=[keys.HOOKS, keys.user_hooks(owner), hook.index_key, keys.HOOK_COUNT],
            args=[hook.id, codec.pack(hook.record())])
        return hook

    async def get(self, hook_id: str) -> Hook | None:
        raw = await self._redis.hget(keys.HOOKS, hook_id)
        return Hook.from_record(codec.unpack(as_bytes(raw))) if raw else None

    async def get_many(self, hook_ids: list[str]) -> list[Hook]:
        if not hook_ids:
            return []
        raws = await self._redis.hmget(keys.HOOKS, hook_ids)
        return [Hook.from_record(codec.unpack(as_bytes(raw))) for raw in raws if raw]

    async def list(self, owner: str | None) -> list[Hook]:
        """The owner's hooks, or every hook when `owner` is None; oldest first."""
        if owner is None:
            hooks = [Hook.from_record(codec.unpack(as_bytes(raw)))
                     for raw in (await self._redis.hgetall(keys.HOOKS)).values()]
        else:
            members = await self._redis.smembers(keys.user_hooks(owner))
            hooks = await self.get_many(sorted(as_bytes(m).decode() for m in members))
        return sorted(hooks, key=lambda hook: hook.id)

    async def delete(self, hook: Hook) -> bool:
        return bool(await self._delete(
            keys=[keys.HOOKS, keys.user_hooks(hook.owner), hook.index_key, keys.HOOK_COUNT,
                  keys.hook_log(hook.id), keys.HOOK_DELAYED],
            args=[hook.id, keys.hook_delivery(""), keys.hook_attempts("")]))

    # From here on, `list` in this class body is the method above: annotations say `builtins`.
    async def matching(self, store: str, event_type: str) -> builtins.list[Hook]:
        return (await self.matching_many([(store, event_type)]))[0]

    async def matching_many(
        self, events: builtins.list[tuple[str, str]],
    ) -> builtins.list[builtins.list[Hook]]:
        """For each (store, event type), the hooks it matches, by id; one round trip."""
        if not events:
            return []
        args: builtins.list[Any] = []
        for store, event_type in events:
            candidates = candidate_index_keys(store, event_type)
            args += [len(candidates), *candidates]
        replies = await self._matching(keys=[keys.HOOKS], args=args)
        return [sorted((Hook.from_record(codec.unpack(raw)) for raw in records),
                       key=lambda hook: hook.id) for records in replies]
