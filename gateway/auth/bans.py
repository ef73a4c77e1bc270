"""The failed-login ban, shared by every gateway process through Redis.

After `attempts` failed credential checks from one address within `window_s`, the address is
banned for `ban_s`: every request from it gets 403, even with correct credentials.
"""

from __future__ import annotations

from gateway.store import keys
from gateway.store.redis import Redis

# A list of failure times per address, trimmed to the window; the ban is its own key so that
# checking it is one EXISTS on the hot path.
_RECORD_FAILURE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
redis.call('ZADD', KEYS[1], now_ms, now_ms .. '-' .. redis.call('INCR', KEYS[1] .. ':n'))
redis.call('PEXPIRE', KEYS[1], window_ms)
redis.call('PEXPIRE', KEYS[1] .. ':n', window_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1], KEYS[1] .. ':n')
  return 1
end
return 0
"""


class LoginGuard:
    def __init__(self, redis: Redis, *, attempts: int, window_s: float, ban_s: float) -> None:
        self._redis = redis
        self._attempts = attempts
        self._window_ms = int(window_s * 1000)
        self._ban_ms = int(ban_s * 1000)
        self._record = redis.register_script(_RECORD_FAILURE)

    async def is_banned(self, address: str) -> bool:
        return bool(await self._redis.exists(keys.ban(address)))

    async def exists_and_get(self, address: str, key: str) -> tuple[bool, bytes | None, int]:
        """Whether the address is banned, the value at `key` and its time to live (ms, <0
        without one), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.ban(address))
            pipe.get(key)
            pipe.pttl(key)
            banned, value, ttl_ms = await pipe.execute()
        return bool(banned), value, int(ttl_ms)

    async def ban_remaining_s(self, address: str) -> float:
        ttl_ms = await self._redis.pttl(keys.ban(address))
        return max(ttl_ms, 0) / 1000

    async def record_failure(self, address: str) -> bool:
        """Count one failed check; True when this failure started a ban."""
        banned = await self._record(
            keys=[keys.login_failures(address), keys.ban(address)],
            args=[self._window_ms, self._attempts, self._ban_ms],
        )
        return bool(banned)
