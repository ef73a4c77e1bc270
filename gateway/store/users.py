"""Users: records in one Redis hash, a login index beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway import codec, ids
from gateway.auth.passwords import hash_password
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes

# Claim the login and write the record in one step: a crash can't leave a login without a user.
_CREATE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    login: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    password_hash: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"_id": self.id, "login": self.login, "groups": list(self.groups),
                "roles": list(self.roles)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> User:
        return cls(
            id=record["_id"],
            login=record["login"],
            groups=tuple(record.get("groups", ())),
            roles=tuple(record.get("roles", ())),
            password_hash=record["password"],
            created_at=record.get("createdAt", 0),
        )


CACHE_SIZE = 10_000
CACHE_TTL_S = 30.0


class LoginTaken(Exception):
    pass


class Users:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._cache: dict[str, tuple[float, User]] = {}

    async def create(
        self, login: str, password: str, *, groups: list[str] | tuple[str, ...] = (),
        roles: list[str] | tuple[str, ...] = (),
    ) -> User:
        user = User(
            id=ids.object_id(),
            login=login,
            groups=tuple(groups),
            roles=tuple(roles),
            password_hash=await hash_password(password),
            created_at=int(time.time() * 1000),
        )
        record = {**user.public(), "password": user.password_hash, "createdAt": user.created_at}
        created = await self._create(
            keys=[keys.USERS, keys.USER_LOGINS], args=[login, user.id, codec.pack(record)]
        )
        if not created:
            raise LoginTaken(login)
        return user

    async def get(self, user_id: str) -> User | None:
        """The user, from a short-lived per-process cache when possible.

        Users are never changed once created, so a cached record can't be stale in any way
        that matters; the cache saves a Redis round trip on every authenticated request.
        """
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        raw = as_bytes(await self._redis.hget(keys.USERS, user_id))
        if not raw:
            return None
        user = User.from_record(codec.unpack(raw))
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache[user_id] = (now + CACHE_TTL_S, user)
        return user

    def forget(self, user_id: str | None) -> None:
        """Drop a cached record (every one with None): the user changed, maybe elsewhere."""
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)

    async def by_login(self, login: str) -> User | None:
        user_id = as_bytes(await self._redis.hget(keys.USER_LOGINS, login))
        if not user_id:
            return None
        return await self.get(user_id.decode())
