"""The durable delivery queue: a Redis stream with a consumer group, a delayed set, a log.

    gw:hooks:inbox           stream  events to match (written by the event pipeline), group "matcher"
    gw:hooks:jobs            stream  delivery jobs {d: delivery id}, group "delivery"
    gw:hooks:delayed         zset    delivery id by due time (ms): retries, deferred jobs
    gw:hook-delivery:<id>    hash    hook, event, body, status, tries, next, created
    gw:hook-attempts:<id>    list    msgpack {at, statusCode, error, durationMs}, last 100
    gw:hook-log:<hook>       zset    the hook's delivery ids by creation (ms), last LOG_SIZE

A delivery id is `<event id>.<hook id>`: matching the same inbox entry twice (a matcher died
before its ack) finds the delivery already there and queues nothing. Every step that moves a
job — enqueue with the inbox ack, record an outcome with the job ack, promote a due retry,
hand a job back — is one script, so a process killed between any two commands leaves each job
either still pending in a stream (and reclaimed later) or fully moved on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from gateway import codec
from gateway.store import keys
from gateway.store.redis import Redis

MATCH_GROUP = "matcher"
DELIVERY_GROUP = "delivery"
# Deliveries kept per hook. GATEWAY__HOOK_LOG_MAX (double underscore: internal, not a setting of
# the contract) lowers it so tests can reach the bound.
LOG_SIZE = int(os.environ.get("GATEWAY__HOOK_LOG_MAX") or 1000)
ATTEMPTS_KEPT = 100  # attempts kept per delivery

# Queue the deliveries of a batch of inbox entries and ack the entries, in one script.
# KEYS: inbox, jobs, hooks. ARGV: group, now, log size, delivery prefix, attempts prefix,
# log prefix, then per entry: entry id, event id, body, n, and its n matching hook ids.
_ENQUEUE = """
local group, now, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local dprefix, aprefix, lprefix = ARGV[4], ARGV[5], ARGV[6]
local created, acked = 0, {}
local i = 7
while i <= #ARGV do
  local entry, event, body, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  acked[#acked + 1] = entry
  for j = i + 4, i + 3 + n do
    local hook = ARGV[j]
    local did = event .. '.' .. hook
    local dkey = dprefix .. did
    if redis.call('HEXISTS', KEYS[3], hook) == 1 and redis.call('EXISTS', dkey) == 0 then
      redis.call('HSET', dkey, 'hook', hook, 'event', event, 'body', body,
                 'status', 'pending', 'tries', 0, 'next', now, 'created', now)
      local log = lprefix .. hook
      redis.call('ZADD', log, now, did)
      local excess = redis.call('ZCARD', log) - size
      if excess > 0 then
        -- A trimmed delivery still under way keeps its record until its outcome (see _SETTLE).
        for _, old in ipairs(redis.call('ZRANGE', log, 0, excess - 1)) do
          local status = redis.call('HGET', dprefix .. old, 'status')
          if status == 'succeeded' or status == 'dead' then
            redis.call('DEL', dprefix .. old, aprefix .. old)
          end
        end
        redis.call('ZREMRANGEBYRANK', log, 0, excess - 1)
      end
      redis.call('XADD', KEYS[2], '*', 'd', did)
      created = created + 1
    end
  end
  i = i + 4 + n
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
end
return created
"""

# What a batch of jobs needs, in one round trip. KEYS: hooks. ARGV: delivery prefix, then
# delivery ids. Returns per id: {hook id, event id, body, hook record}, or false when the
# delivery or its hook is gone.
_TAKE = """
local result = {}
for i = 2, #ARGV do
  local fields = redis.call('HMGET', ARGV[1] .. ARGV[i], 'hook', 'event', 'body')
  local record = fields[1] and redis.call('HGET', KEYS[1], fields[1])
  if record then
    result[#result + 1] = {fields[1], fields[2], fields[3], record}
  else
    result[#result + 1] = false
  end
end
return result
"""

# Which of these hooks still exist. KEYS: hooks. ARGV: hook ids.
_PRESENT = """
local result = {}
for i = 1, #ARGV do result[i] = redis.call('HEXISTS', KEYS[1], ARGV[i]) end
return result
"""

# Settle a batch of jobs — each one's outcome recorded (and a retry scheduled) or the job put
# back or dropped — and ack them all, in one script: a job is acked only with its outcome.
# KEYS: jobs, delayed. ARGV: group, now ms, delivery prefix, attempts prefix, log prefix,
# number of retries n, the n retry delays in ms, then per job: entry id, delivery id, hook id,
# kind (succeeded | failed | release), payload (the packed attempt; for release the due time
# in ms, or '' to drop the job).
_SETTLE = """
local group, now = ARGV[1], tonumber(ARGV[2])
local dprefix, aprefix, lprefix = ARGV[3], ARGV[4], ARGV[5]
local retries = tonumber(ARGV[6])
local results, acked = {}, {}
for i = 7 + retries, #ARGV, 5 do
  local entry, did, hook, kind, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  acked[#acked + 1] = entry
  local dkey, akey = dprefix .. did, aprefix .. did
  local result
  local function final(status)
    if redis.call('ZSCORE', lprefix .. hook, did) then
      redis.call('HSET', dkey, 'status', status, 'next', '')
    else  -- trimmed from the log while under way: nothing left to keep it for
      redis.call('DEL', dkey, akey)
    end
    return status
  end
  if kind == 'release' then
    if payload ~= '' then redis.call('ZADD', KEYS[2], payload, did) end
    result = 'released'
  elseif redis.call('EXISTS', dkey) == 0 then
    result = 'gone'
  else
    redis.call('RPUSH', akey, payload)
    redis.call('LTRIM', akey, -""" + str(ATTEMPTS_KEPT) + """, -1)
    if kind == 'succeeded' then
      result = final('succeeded')
    else
      local tries = redis.call('HINCRBY', dkey, 'tries', 1)
      if tries > retries then
        result = final('dead')
      else
        local due = now + tonumber(ARGV[6 + tries])
        redis.call('HSET', dkey, 'status', 'failed', 'next', due)
        redis.call('ZADD', KEYS[2], due, did)
        result = 'failed'
      end
    end
  end
  results[#results + 1] = result
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
end
return results
"""

# KEYS: delayed, jobs. ARGV: now, limit, delivery prefix.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, did in ipairs(due) do
  redis.call('ZREM', KEYS[1], did)
  if redis.call('EXISTS', ARGV[3] .. did) == 1 then
    redis.call('XADD', KEYS[2], '*', 'd', did)
  end
end
return #due
"""

# KEYS: delivery, delayed, jobs. ARGV: delivery id, now.
_RETRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'pending', 'next', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Job:
    """A delivery as the worker needs it, read with its hook in the same round trip."""
    hook_id: str
    event_id: str
    body: bytes
    hook_record: bytes  # msgpack, with the secret


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one job ends: an attempt's outcome, or the job put back (due ms) or dropped ('')."""
    entry_id: str
    delivery_id: str
    hook_id: str
    kind: str  # succeeded | failed | release
    payload: bytes | str

    @classmethod
    def outcome(cls, entry_id: str, delivery_id: str, hook_id: str, attempt: dict[str, Any],
                succeeded: bool) -> Settlement:
        return cls(entry_id, delivery_id, hook_id, "succeeded" if succeeded else "failed",
                   codec.pack(attempt))

    @classmethod
    def release(cls, entry_id: str, delivery_id: str, *, delay_s: float | None) -> Settlement:
        """Ack the job and, unless `delay_s` is None, queue it again after `delay_s`."""
        due = "" if delay_s is None else str(now_ms() + int(delay_s * 1000))
        return cls(entry_id, delivery_id, "", "release", due)


# Remove consumers of the delivery group idle over ARGV[2] ms with nothing pending — atomically,
# so a consumer can't take a job between the check and its removal (that job would be lost from
# the pending list). KEYS: jobs. ARGV: group, idle ms, our own consumer name.
_REMOVE_DEAD = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] ~= ARGV[3] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DeliveryQueue:
    def __init__(self, redis: Redis, *, retry_schedule_s: tuple[float, ...] = ()) -> None:
        self._redis = redis
        self._schedule_ms = [int(delay * 1000) for delay in retry_schedule_s]
        self._enqueue = redis.register_script(_ENQUEUE)
        self._take = redis.register_script(_TAKE)
        self._present = redis.register_script(_PRESENT)
        self._settle = redis.register_script(_SETTLE)
        self._promote = redis.register_script(_PROMOTE)
        self._remove_dead = redis.register_script(_REMOVE_DEAD)
        self._retry = redis.register_script(_RETRY)

    async def ensure_groups(self) -> None:
        """Create both consumer groups (from the start of their streams) if missing."""
        for stream, group in ((keys.HOOK_INBOX, MATCH_GROUP), (keys.HOOK_JOBS, DELIVERY_GROUP)):
            try:
                await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
            except Exception as exc:  # BUSYGROUP: another process made it first
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, entries: list[tuple[str, str, bytes, list[str]]]) -> int:
        """For each inbox entry (entry id, event id, body, matching hook ids), queue one
        delivery per hook still existing; ack the entries; all in one script."""
        args: list[Any] = [MATCH_GROUP, now_ms(), LOG_SIZE, keys.hook_delivery(""),
                           keys.hook_attempts(""), keys.hook_log("")]
        for entry_id, event_id, body, hook_ids in entries:
            args += [entry_id, event_id, body, len(hook_ids), *hook_ids]
        return int(await self._enqueue(keys=[keys.HOOK_INBOX, keys.HOOK_JOBS, keys.HOOKS],
                                       args=args))

    async def take(self, delivery_ids: list[str]) -> list[Job | None]:
        """Each delivery with its hook's record, or None when either is gone."""
        if not delivery_ids:
            return []
        replies = await self._take(keys=[keys.HOOKS],
                                   args=[keys.hook_delivery(""), *delivery_ids])
        return [Job(_text(r[0]), _text(r[1]), r[2], r[3]) if r else None for r in replies]

    async def present(self, hook_ids: list[str]) -> list[bool]:
        """Whether each hook still exists."""
        return [bool(r) for r in await self._present(keys=[keys.HOOKS], args=hook_ids)]

    async def settle(self, settlements: list[Settlement]) -> list[str]:
        """Record outcomes, schedule retries, put jobs back or drop them, and ack every job, in
        one script. Returns per job: succeeded, failed, dead, gone (the delivery was deleted
        meanwhile) or released."""
        args: list[Any] = [DELIVERY_GROUP, now_ms(), keys.hook_delivery(""),
                           keys.hook_attempts(""), keys.hook_log(""), len(self._schedule_ms),
                           *self._schedule_ms]
        for s in settlements:
            args += [s.entry_id, s.delivery_id, s.hook_id, s.kind, s.payload]
        replies = await self._settle(keys=[keys.HOOK_JOBS, keys.HOOK_DELAYED], args=args)
        return [_text(r) for r in replies]

    async def promote(self, limit: int = 500) -> int:
        """Move retries that are due into the job stream; safe to run from every worker."""
        return int(await self._promote(keys=[keys.HOOK_DELAYED, keys.HOOK_JOBS],
                                       args=[now_ms(), limit, keys.hook_delivery("")]))

    async def remove_dead_consumers(self, *, idle_ms: int, keep: str) -> list[str]:
        """Drop consumers of the delivery group idle over `idle_ms` with no pending job."""
        removed = await self._remove_dead(keys=[keys.HOOK_JOBS],
                                          args=[DELIVERY_GROUP, idle_ms, keep])
        return [_text(name) for name in removed]

    async def retry(self, delivery_id: str) -> bool:
        return bool(await self._retry(
            keys=[keys.hook_delivery(delivery_id), keys.HOOK_DELAYED, keys.HOOK_JOBS],
            args=[delivery_id, now_ms()]))

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """The delivery's hash fields (bytes), or None."""
        raw = await self._redis.hgetall(keys.hook_delivery(delivery_id))
        return {_text(k): v for k, v in raw.items()} if raw else None

    async def log(self, hook_id: str, *, offset: int, limit: int) -> list[dict[str, Any]]:
        """The hook's deliveries, newest first, as the API shows them."""
        ids = [_text(m) for m in await self._redis.zrevrange(
            keys.hook_log(hook_id), offset, offset + limit - 1)]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for did in ids:
                pipe.hmget(keys.hook_delivery(did), "event", "status", "next", "created")
                pipe.lrange(keys.hook_attempts(did), 0, -1)
            replies = await pipe.execute()
        result = []
        for n, did in enumerate(ids):
            (event, status, due, created), attempts = replies[2 * n], replies[2 * n + 1]
            if status is None:
                continue  # trimmed or deleted between the two reads
            result.append({
                "id": did, "eventId": _text(event), "status": _text(status),
                "attempts": [codec.unpack(a) for a in attempts],
                "nextAttemptAt": int(due) if due else None,
                "createdAt": int(created) if created else None,
            })
        return result

    async def depth(self) -> tuple[int, float]:
        """Deliveries waiting (queued, in flight or scheduled) and the oldest queued one's age (s)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.HOOK_JOBS)
            pipe.zcard(keys.HOOK_DELAYED)
            pipe.xrange(keys.HOOK_JOBS, count=1)
            pipe.zrange(keys.HOOK_DELAYED, 0, 0, withscores=True)
            queued, delayed, oldest, first_due = await pipe.execute()
        now = now_ms()
        age_ms = 0
        if oldest:
            age_ms = now - int(_text(oldest[0][0]).split("-", 1)[0])
        if first_due:
            age_ms = max(age_ms, now - int(first_due[0][1]))  # an overdue retry waits too
        return queued + delayed, max(age_ms, 0) / 1000
