"""Users: records in one Redis hash, a login index beside it, and what changing them ends.

A new password, `disabled: true` or deletion ends every credential of the user: the one script
that writes the record also deletes each session, token and API key listed in the user's
indexes (`keys.user_sessions`, `keys.user_tokens`, `keys.user_apikeys`, kept by
`gateway.auth.credentials`) and publishes `UserChanged(ended=True)` on the control channel. A
change of groups or roles only publishes `UserChanged(ended=False)`, in the same script as the
write, so every event written after the change reaches each process after the message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway import codec, ids
from gateway.auth.passwords import hash_password
from gateway.store import control, keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes

# Claim the login and write the record in one step: a crash can't leave a login without a user.
_CREATE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# Write (or delete) a record only if it is still the exact bytes the caller read: two admins
# changing one user's groups and roles at once can't lose either change. With ARGV[5] = '1',
# every session, token and API key of the user goes in the same step. Returns 1 done,
# 0 no such user, -1 changed meanwhile (read again and retry).
# The credentials' own keys are named from prefixes (ARGV[8..10]): their digests are only
# known inside the script, where the indexes are read.
_WRITE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
if current ~= ARGV[2] then return -1 end
if ARGV[5] == '1' then
  for _, digest in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    redis.call('DEL', ARGV[8] .. digest)
  end
  for _, digest in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    redis.call('DEL', ARGV[9] .. digest)
  end
  for _, key_id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    redis.call('HDEL', KEYS[6], key_id)
    redis.call('DEL', ARGV[10] .. key_id)
  end
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[4]) end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
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
    disabled: bool = False

    def public(self) -> dict[str, Any]:
        """What the user may see of themselves (`/users/me`) and what creating a user answers.

        `disabled` is not here: a disabled user can't authenticate to ask, and a new user is
        never disabled. Admins see it in `admin_view`.
        """
        return {"_id": self.id, "login": self.login, "groups": list(self.groups),
                "roles": list(self.roles)}

    def admin_view(self) -> dict[str, Any]:
        """The user as `GET/PATCH /api/v1/users/{id}` and the list show it: never the password."""
        return {**self.public(), "disabled": self.disabled, "createdAt": self.created_at}

    def record(self) -> dict[str, Any]:
        return {**self.public(), "password": self.password_hash, "createdAt": self.created_at,
                "disabled": self.disabled}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> User:
        return cls(
            id=record["_id"],
            login=record["login"],
            groups=tuple(record.get("groups", ())),
            roles=tuple(record.get("roles", ())),
            password_hash=record["password"],
            created_at=record.get("createdAt", 0),
            disabled=bool(record.get("disabled", False)),
        )


# Each process keeps recently used records to save a Redis round trip per request. A change
# reaches every process's cache through the control channel (the realtime hub calls `forget`);
# when a process misses that message (cut off from Redis), its hub forgets everything on
# reconnecting, and CACHE_TTL_S bounds the rest (a `gateway worker` has no hub).
CACHE_SIZE = 10_000
CACHE_TTL_S = 30.0
_WRITE_ATTEMPTS = 20


class LoginTaken(Exception):
    pass


class Users:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._write = redis.register_script(_WRITE)
        self._cache: dict[str, tuple[float, User]] = {}
        # Bumped by every forget: a read that was in flight across a forget may hold the old
        # record, so it is not cached (else the change would be undone for CACHE_TTL_S).
        self._epoch = 0

    async def create(
        self, login: str, password: str, *, groups: Sequence[str] = (),
        roles: Sequence[str] = (),
    ) -> User:
        user = User(
            id=ids.object_id(),
            login=login,
            groups=tuple(groups),
            roles=tuple(roles),
            password_hash=await hash_password(password),
            created_at=int(time.time() * 1000),
        )
        created = await self._create(
            keys=[keys.USERS, keys.USER_LOGINS], args=[login, user.id, codec.pack(user.record())]
        )
        if not created:
            raise LoginTaken(login)
        return user

    # -- reading -------------------------------------------------------------------------
    async def get(self, user_id: str) -> User | None:
        """The user, from this process's short-lived cache when possible (see CACHE_TTL_S)."""
        cached = self.peek(user_id)
        if cached is not None:
            return cached
        return await self._fetch_and_remember(user_id)

    async def _fetch_and_remember(self, user_id: str) -> User | None:
        epoch = self._epoch
        user = await self.fetch(user_id)
        if user is not None and epoch == self._epoch:
            self._cache.pop(user_id, None)  # re-inserted last: the oldest entry goes first
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[user_id] = (time.monotonic() + CACHE_TTL_S, user)
        return user

    def peek(self, user_id: str) -> User | None:
        """The cached record, if there is a fresh one; never a Redis call."""
        cached = self._cache.get(user_id)
        if cached is None or cached[0] <= time.monotonic():
            return None
        return cached[1]

    async def fetch(self, user_id: str) -> User | None:
        """The record as Redis has it now, bypassing the cache."""
        raw = as_bytes(await self._redis.hget(keys.USERS, user_id))
        return User.from_record(codec.unpack(raw)) if raw else None

    async def by_login(self, login: str) -> User | None:
        """The user with this login, read from Redis (not the cache): a password is about to be
        checked against it, and it must be the current one."""
        user_id = as_bytes(await self._redis.hget(keys.USER_LOGINS, login))
        if not user_id:
            return None
        return await self._fetch_and_remember(user_id.decode())

    async def list_all(self) -> list[User]:
        """Every user, oldest first."""
        records = await self._redis.hgetall(keys.USERS)
        users = [User.from_record(codec.unpack(as_bytes(raw))) for raw in records.values()]
        return sorted(users, key=lambda user: (user.created_at, user.id))

    # -- changing ------------------------------------------------------------------------
    async def update(
        self, user_id: str, *, password: str | None = None, groups: Sequence[str] | None = None,
        roles: Sequence[str] | None = None, disabled: bool | None = None,
    ) -> User | None:
        """Change the given fields; None if there is no such user.

        A new password or `disabled=True` revokes every session, token and API key of the user
        in the same step, and the control message says so (`ended`).
        """
        password_hash = await hash_password(password) if password is not None else None
        ends = password_hash is not None or disabled is True
        for _ in range(_WRITE_ATTEMPTS):
            raw = as_bytes(await self._redis.hget(keys.USERS, user_id))
            if not raw:
                return None
            record = codec.unpack(raw)
            if password_hash is not None:
                record["password"] = password_hash
            if groups is not None:
                record["groups"] = list(groups)
            if roles is not None:
                record["roles"] = list(roles)
            if disabled is not None:
                record["disabled"] = disabled
            user = User.from_record(record)
            done = await self._commit(user, raw, codec.pack(user.record()), ends=ends)
            if done is not None:
                return user if done else None
        raise RuntimeError(f"user {user_id} kept changing; gave up after {_WRITE_ATTEMPTS} tries")

    async def delete(self, user_id: str) -> User | None:
        """Delete the user, free the login and revoke everything; the user as it was, or None."""
        for _ in range(_WRITE_ATTEMPTS):
            raw = as_bytes(await self._redis.hget(keys.USERS, user_id))
            if not raw:
                return None
            user = User.from_record(codec.unpack(raw))
            done = await self._commit(user, raw, b"", ends=True)
            if done is not None:
                return user if done else None
        raise RuntimeError(f"user {user_id} kept changing; gave up after {_WRITE_ATTEMPTS} tries")

    async def _commit(self, user: User, expected: bytes, new: bytes, *, ends: bool) -> bool | None:
        """True written, False no such user, None changed meanwhile."""
        message = control.encode(control.UserChanged(user.id, user.groups, user.roles, ends))
        result = await self._write(
            keys=[keys.USERS, keys.USER_LOGINS, keys.user_sessions(user.id),
                  keys.user_tokens(user.id), keys.user_apikeys(user.id), keys.APIKEYS],
            args=[user.id, expected, new, user.login, "1" if ends else "0",
                  keys.CONTROL_CHANNEL, message,
                  keys.session(""), keys.token(""), keys.apikey_tokens("")],
        )
        if result == -1:
            return None
        self.forget(user.id)  # this process sees the change at once, whatever its hub does
        return bool(result == 1)

    # -- the per-process cache -----------------------------------------------------------
    def forget(self, user_id: str | None = None) -> None:
        """Drop a user's cached record (every record with None): it changed elsewhere."""
        self._epoch += 1
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)

    def forget_all(self) -> None:
        self.forget(None)
