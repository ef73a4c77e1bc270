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

import time
from typing import Any

from gateway import codec
from gateway.store import keys
from gateway.store.redis import Redis

MATCH_GROUP = "matcher"
DELIVERY_GROUP = "delivery"
LOG_SIZE = 1000  # deliveries kept per hook
ATTEMPTS_KEPT = 100  # attempts kept per delivery

# KEYS: inbox, jobs, hooks, delayed. ARGV: group, entry id, event id, body, now, log size,
# delivery prefix, attempts prefix, log prefix, then the matching hook ids.
_ENQUEUE = """
local created = 0
for i = 10, #ARGV do
  local hook = ARGV[i]
  local did = ARGV[3] .. '.' .. hook
  local dkey = ARGV[7] .. did
  if redis.call('HEXISTS', KEYS[3], hook) == 1 and redis.call('EXISTS', dkey) == 0 then
    redis.call('HSET', dkey, 'hook', hook, 'event', ARGV[3], 'body', ARGV[4],
               'status', 'pending', 'tries', 0, 'next', ARGV[5], 'created', ARGV[5])
    local log = ARGV[9] .. hook
    redis.call('ZADD', log, ARGV[5], did)
    local excess = redis.call('ZCARD', log) - tonumber(ARGV[6])
    if excess > 0 then
      -- A trimmed delivery still under way keeps its record until its outcome (see _RECORD).
      for _, old in ipairs(redis.call('ZRANGE', log, 0, excess - 1)) do
        local status = redis.call('HGET', ARGV[7] .. old, 'status')
        if status == 'succeeded' or status == 'dead' then
          redis.call('DEL', ARGV[7] .. old, ARGV[8] .. old)
        end
      end
      redis.call('ZREMRANGEBYRANK', log, 0, excess - 1)
    end
    redis.call('XADD', KEYS[2], '*', 'd', did)
    created = created + 1
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return created
"""

# KEYS: jobs, delivery, attempts, delayed, log. ARGV: group, entry id, delivery id, attempt,
# outcome (succeeded | failed), now ms, then the retry delays in ms.
_RECORD = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then return 'gone' end
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], -""" + str(ATTEMPTS_KEPT) + """, -1)
local function final(status)
  if redis.call('ZSCORE', KEYS[5], ARGV[3]) then
    redis.call('HSET', KEYS[2], 'status', status, 'next', '')
  else  -- trimmed from the log while under way: nothing left to keep it for
    redis.call('DEL', KEYS[2], KEYS[3])
  end
  return status
end
if ARGV[5] == 'succeeded' then return final('succeeded') end
local tries = redis.call('HINCRBY', KEYS[2], 'tries', 1)
if tries > #ARGV - 6 then return final('dead') end
local due = tonumber(ARGV[6]) + tonumber(ARGV[6 + tries])
redis.call('HSET', KEYS[2], 'status', 'failed', 'next', due)
redis.call('ZADD', KEYS[4], due, ARGV[3])
return 'failed'
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

# KEYS: jobs, delayed. ARGV: group, entry id, delivery id, due ms ('' to drop the job).
_RELEASE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
return 1
"""

# KEYS: delivery, delayed, jobs. ARGV: delivery id, now.
_RETRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'pending', 'next', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[1])
return 1
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
        self._record = redis.register_script(_RECORD)
        self._promote = redis.register_script(_PROMOTE)
        self._release = redis.register_script(_RELEASE)
        self._retry = redis.register_script(_RETRY)

    async def ensure_groups(self) -> None:
        """Create both consumer groups (from the start of their streams) if missing."""
        for stream, group in ((keys.HOOK_INBOX, MATCH_GROUP), (keys.HOOK_JOBS, DELIVERY_GROUP)):
            try:
                await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
            except Exception as exc:  # BUSYGROUP: another process made it first
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, entry_id: str, event_id: str, body: bytes,
                      hook_ids: list[str]) -> int:
        """Queue one delivery per hook still existing and ack the inbox entry, atomically."""
        return int(await self._enqueue(
            keys=[keys.HOOK_INBOX, keys.HOOK_JOBS, keys.HOOKS, keys.HOOK_DELAYED],
            args=[MATCH_GROUP, entry_id, event_id, body, now_ms(), LOG_SIZE,
                  keys.hook_delivery(""), keys.hook_attempts(""), keys.hook_log(""), *hook_ids]))

    async def record(self, entry_id: str, delivery_id: str, hook_id: str,
                     attempt: dict[str, Any], succeeded: bool) -> str:
        """Append the attempt, set the outcome (and schedule a retry) and ack the job."""
        result = await self._record(
            keys=[keys.HOOK_JOBS, keys.hook_delivery(delivery_id),
                  keys.hook_attempts(delivery_id), keys.HOOK_DELAYED, keys.hook_log(hook_id)],
            args=[DELIVERY_GROUP, entry_id, delivery_id, codec.pack(attempt),
                  "succeeded" if succeeded else "failed", now_ms(), *self._schedule_ms])
        return _text(result)

    async def release(self, entry_id: str, delivery_id: str, *, delay_s: float | None) -> None:
        """Ack the job and, unless `delay_s` is None, put it back to run after `delay_s`."""
        due = "" if delay_s is None else str(now_ms() + int(delay_s * 1000))
        await self._release(keys=[keys.HOOK_JOBS, keys.HOOK_DELAYED],
                            args=[DELIVERY_GROUP, entry_id, delivery_id, due])

    async def promote(self, limit: int = 500) -> int:
        """Move retries that are due into the job stream; safe to run from every worker."""
        return int(await self._promote(keys=[keys.HOOK_DELAYED, keys.HOOK_JOBS],
                                       args=[now_ms(), limit, keys.hook_delivery("")]))

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
