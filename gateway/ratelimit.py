"""Per-user request limits, shared by every gateway process through one Lua script.

Sliding windows, not fixed ones: "at most N in any second" must hold across a window boundary,
where fixed windows would allow 2N. Each user has a sorted set of request times over the last
minute; one script trims it, counts both windows, and admits or refuses atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.exceptions import RateLimited
from gateway.store import keys
from gateway.store.redis import Redis

_ADMIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local per_second, per_minute = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - 60000)
local in_minute = redis.call('ZCARD', KEYS[1])
local in_second = redis.call('ZCOUNT', KEYS[1], now_ms - 999, '+inf')
local admitted = 0
if in_second < per_second and in_minute < per_minute then
  admitted = 1
  redis.call('ZADD', KEYS[1], now_ms, now_ms .. '-' .. redis.call('INCR', KEYS[2]))
  redis.call('PEXPIRE', KEYS[1], 60000)
  redis.call('PEXPIRE', KEYS[2], 60000)
  in_second = in_second + 1
  in_minute = in_minute + 1
end
-- When does each window free a slot? The oldest request still inside it leaves.
local function frees_at(window_ms, limit, count)
  if count < limit then return 0 end
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms - window_ms + 1, '+inf',
                            'WITHSCORES', 'LIMIT', count - limit, 1)
  return tonumber(oldest[2]) + window_ms - now_ms
end
local wait_second = frees_at(1000, per_second, in_second)
local wait_minute = frees_at(60000, per_minute, in_minute)
-- The earliest request still counted in the minute sets when the minute window ends.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset_ms = 0
if first[2] then reset_ms = tonumber(first[2]) + 60000 - now_ms end
return {admitted, math.min(per_second - in_second, per_minute - in_minute),
        math.max(wait_second, wait_minute), reset_ms}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    remaining: int
    retry_after_s: int  # 0 when admitted
    reset_s: int

    def headers(self) -> dict[str, str]:
        headers = {"X-Ratelimit-Remaining": str(max(self.remaining, 0)),
                   "X-Ratelimit-Reset": str(self.reset_s)}
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    def __init__(self, redis: Redis, *, per_second: int, per_minute: int) -> None:
        self._per_second = per_second
        self._per_minute = per_minute
        self._admit = redis.register_script(_ADMIT)

    async def admit(self, user_id: str) -> Decision:
        admitted, remaining, wait_ms, reset_ms = await self._admit(
            keys=[keys.ratelimit(user_id, "log"), keys.ratelimit(user_id, "seq")],
            args=[self._per_second, self._per_minute],
        )
        return Decision(
            admitted=bool(admitted),
            remaining=int(remaining),
            retry_after_s=0 if admitted else max(1, math.ceil(int(wait_ms) / 1000)),
            reset_s=max(0, math.ceil(int(reset_ms) / 1000)),
        )

    async def enforce(self, user_id: str) -> Decision:
        """Count one request (a REST call or a realtime handshake) against the user's limits.

        Raises:
            RateLimited: over either limit; it carries the rate-limit headers, Retry-After too.
        """
        decision = await self.admit(user_id)
        if not decision.admitted:
            raise self.refusal(decision)
        return decision

    def refusal(self, decision: Decision) -> RateLimited:
        """The 429 for a request `decision` refused."""
        return RateLimited(
            f"Rate limit exceeded: at most {self._per_second} requests a second and "
            f"{self._per_minute} a minute (REST calls and realtime handshakes together); "
            f"retry in {decision.retry_after_s} s", headers=decision.headers())
