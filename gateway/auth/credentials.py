"""Sessions, bearer tokens and API keys: opaque random secrets, stored only as SHA-256 digests.

| secret            | looks like        | kept as                          | lifetime                 |
| ----------------- | ----------------- | -------------------------------- | ------------------------ |
| session id        | 43 url-safe chars | gw:session:<digest> -> user id   | GATEWAY_SESSION_TTL_S    |
| login token       | gwt_…             | gw:token:<digest> -> record      | GATEWAY_TOKEN_TTL_S      |
| API access token  | gwa_…             | gw:token:<digest> -> record      | 900 s                    |
| one-time token    | ott_…             | gw:token:<digest> -> record      | 900 s, GETDEL on use     |
| API key           | gwk_<id>_<secret> | gw:apikeys[id] -> digest, scope  | until deleted            |

Looking a secret up by its digest needs no comparison of secrets at all; the API key, looked up
by its public id, is compared with `hmac.compare_digest`.

Every session and token is also filed under its user (`gw:user-sessions:<user>`,
`gw:user-tokens:<user>`, sorted sets of digests by expiry) and an access token under its API
key (`gw:apikey-tokens:<id>`), in the same script that creates it, so a password change, a
disabled or deleted user (gateway.store.users) or a deleted key can end each one. That script
also checks that what vouched for the new credential still holds — the user exists, is not
disabled and still has the password just verified; the issuing session, token or API key still
exists — so a credential can't be born just after the revocation that should have ended it.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from redis.commands.core import AsyncScript

from gateway import codec, ids
from gateway.auth.principal import Credential
from gateway.exceptions import Unauthorized
from gateway.store import control, keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes

LOGIN_TOKEN = "gwt_"
ACCESS_TOKEN = "gwa_"
ONE_TIME_TOKEN = "ott_"
API_KEY = "gwk_"


def now_ms() -> int:
    return int(time.time() * 1000)


# KEYS: 1 the new credential, 2 the user's index of such credentials, 3 gw:users,
#       4 what must still exist (the issuer's key, or gw:apikeys), 5 the API key's token index.
#       Unused slots repeat KEYS[1]/KEYS[2].
# ARGV: 1 value, 2 lifetime (ms), 3 user id, 4 digest, 5 the password hash that must still be
#       the user's ('' for any), 6 '' | 'key' (KEYS[4] must exist) | 'field' (KEYS[4] must hold
#       field ARGV[7]).
# Returns the issue time (ms, Redis's clock: one clock for every process's index scores), or
# 0 no such user, -1 disabled, -2 password changed, -3 issuer gone.
_ISSUE = """
local raw = redis.call('HGET', KEYS[3], ARGV[3])
if not raw then return 0 end
local user = cmsgpack.unpack(raw)
if user['disabled'] then return -1 end
if ARGV[5] ~= '' and user['password'] ~= ARGV[5] then return -2 end
if ARGV[6] == 'key' and redis.call('EXISTS', KEYS[4]) == 0 then return -3 end
if ARGV[6] == 'field' and redis.call('HEXISTS', KEYS[4], ARGV[7]) == 0 then return -3 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local function file_under(index)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, now + ttl, ARGV[4])
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end
file_under(KEYS[2])
if KEYS[5] ~= KEYS[2] then file_under(KEYS[5]) end
return now
"""

_REFUSED = {
    0: "The user behind these credentials no longer exists",
    -1: "This account is disabled; an administrator can enable it again",
    -2: "The password was changed meanwhile; log in again",
    -3: "The credential this was asked with has ended; log in again",
}


async def _issue(script: AsyncScript, *, key: str, index: str, value: bytes | str,
                 ttl_s: int, user_id: str, digest: str, password_hash: str | None = None,
                 requires: str | None = None, requires_field: str | None = None,
                 second_index: str | None = None) -> int:
    """Run _ISSUE; the issue time (ms), or Unauthorized saying what no longer holds."""
    check = "" if requires is None else ("field" if requires_field else "key")
    issued = int(await script(
        keys=[key, index, keys.USERS, requires or key, second_index or index],
        args=[value, ttl_s * 1000, user_id, digest, password_hash or "", check,
              requires_field or ""]))
    if issued <= 0:
        raise Unauthorized(_REFUSED[issued])
    return issued


class Sessions:
    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self._issue = redis.register_script(_ISSUE)

    async def create(self, user_id: str, *, password_hash: str) -> tuple[str, int]:
        """A new session id and its expiry (ms since the epoch), for a user whose password
        (`password_hash`) was just verified: refused if it changed meanwhile."""
        sid = ids.secret_token()
        digest = ids.digest(sid)
        issued = await _issue(self._issue, key=keys.session(digest),
                              index=keys.user_sessions(user_id), value=user_id,
                              ttl_s=self.ttl_s, user_id=user_id, digest=digest,
                              password_hash=password_hash)
        return sid, issued + self.ttl_s * 1000

    @staticmethod
    def key_for(sid: str) -> tuple[str, str]:
        """(Redis key, digest) of a session id: the value there is the user id."""
        digest = ids.digest(sid)
        return keys.session(digest), digest

    async def user_for(self, sid: str) -> tuple[str, str] | None:
        """(user id, session digest) for a live session."""
        key, digest = self.key_for(sid)
        user_id = as_bytes(await self._redis.get(key))
        return (user_id.decode(), digest) if user_id else None

    async def revoke(self, digest: str, *, user_id: str) -> None:
        """Delete the session and tell every gateway process to close its connections."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.session(digest))
            pipe.zrem(keys.user_sessions(user_id), digest)
            pipe.publish(keys.CONTROL_CHANNEL,
                         control.encode(control.CredentialEnded("session", digest)))
            await pipe.execute()


TokenKind = Literal["login", "access", "once"]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    user_id: str
    scope: frozenset[str]
    kind: TokenKind
    digest: str
    apikey_id: str | None = None  # an access token's API key
    issuer: Credential | None = None  # a one-time token's issuing credential


def _pack_credential(credential: Credential) -> dict[str, Any]:
    return {"k": credential.kind, "d": credential.digest, "a": credential.apikey_id,
            "x": credential.expires_at_ms}


def _unpack_credential(value: dict[str, Any]) -> Credential:
    return Credential(value["k"], value.get("d"), value.get("a"), value.get("x"))


class Tokens:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._issue = redis.register_script(_ISSUE)

    async def issue(self, user_id: str, *, kind: TokenKind, scope: frozenset[str], ttl_s: int,
                    extra: dict[str, Any] | None = None, issuer: Credential | None = None,
                    password_hash: str | None = None) -> tuple[str, int, int]:
        """A new token, its issue time and its expiry (both ms since the epoch).

        What vouches for it must still hold when it is stored, or Unauthorized: for a login
        token the user's password (`password_hash`, just verified); for an access token its API
        key (`extra["key"]`); for a one-time token its `issuer` — a session or token that still
        exists, or for Basic the user's password hash. A one-time token records its issuer: the
        connection it opens lives as long as that.
        """
        prefix = {"login": LOGIN_TOKEN, "access": ACCESS_TOKEN, "once": ONE_TIME_TOKEN}[kind]
        token = ids.secret_token(prefix)
        digest = ids.digest(token)
        record = {"u": user_id, "s": sorted(scope), "k": kind, **(extra or {})}
        if issuer is not None:
            record["i"] = _pack_credential(issuer)
        apikey_id = record.get("key")
        requires = requires_field = second_index = None
        if apikey_id is not None:
            requires, requires_field = keys.APIKEYS, str(apikey_id)
            second_index = keys.apikey_tokens(str(apikey_id))
        elif issuer is not None and issuer.digest and issuer.kind != "basic":
            # (Basic's digest names a password hash, checked as `password_hash` below)
            requires = (keys.session if issuer.kind == "session" else keys.token)(issuer.digest)
        issued = await _issue(self._issue, key=keys.token(digest), index=keys.user_tokens(user_id),
                              value=codec.pack(record), ttl_s=ttl_s, user_id=user_id,
                              digest=digest, password_hash=password_hash, requires=requires,
                              requires_field=requires_field, second_index=second_index)
        return token, issued, issued + ttl_s * 1000

    @staticmethod
    def key_for(token: str) -> tuple[str, str]:
        """(Redis key, digest) of a token."""
        digest = ids.digest(token)
        return keys.token(digest), digest

    @staticmethod
    def spent_on_use(token: str) -> bool:
        return token.startswith(ONE_TIME_TOKEN)

    async def resolve(self, token: str) -> TokenRecord | None:
        """The token's record; a one-time token is spent by this very call."""
        key, digest = self.key_for(token)
        if self.spent_on_use(token):
            raw = as_bytes(await self._redis.getdel(key))
        else:
            raw = as_bytes(await self._redis.get(key))
        return await self.record(raw, digest)

    async def record(self, raw: bytes | None, digest: str) -> TokenRecord | None:
        """The record behind a token's stored value (read by `resolve` or by the caller)."""
        if not raw:
            return None
        record = codec.unpack(raw)
        # An API key's access token dies with its key: deleting a leaked key must not leave
        # its tokens working for up to 900 s.
        if "key" in record and not await self._redis.hexists(keys.APIKEYS, record["key"]):
            return None
        issuer = _unpack_credential(record["i"]) if "i" in record else None
        # A one-time token is no better than what issued it: spent after its issuer ended, it
        # would open a connection that nothing could end any more.
        if issuer is not None and not await self.alive(issuer):
            return None
        return TokenRecord(record["u"], frozenset(record["s"]), record["k"], digest,
                           apikey_id=record.get("key"), issuer=issuer)

    async def alive(self, credential: Credential) -> bool:
        """Whether a session or token credential (and its API key) still exists."""
        if credential.kind == "session" and credential.digest:
            return bool(await self._redis.exists(keys.session(credential.digest)))
        if credential.kind == "token" and credential.digest:
            if not await self._redis.exists(keys.token(credential.digest)):
                return False
            if credential.apikey_id:
                return bool(await self._redis.hexists(keys.APIKEYS, credential.apikey_id))
        return True

    async def revoke(self, digest: str, *, user_id: str) -> None:
        """Delete the token and tell every gateway process to close its connections."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.token(digest))
            pipe.zrem(keys.user_tokens(user_id), digest)
            pipe.publish(keys.CONTROL_CHANNEL,
                         control.encode(control.CredentialEnded("token", digest)))
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: str
    scope: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "createdAt": self.created_at}


# KEYS: 1 gw:apikeys, 2 the owner's key set, 3 the key's token index. ARGV: 1 key id, 2 the
# token key prefix, 3 the control channel, 4 the message. 1 deleted, 0 already gone.
_DELETE_APIKEY = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
for _, digest in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  redis.call('DEL', ARGV[2] .. digest)
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


class ApiKeys:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._delete = redis.register_script(_DELETE_APIKEY)

    async def create(self, user_id: str, scope: str) -> tuple[ApiKey, str]:
        key_id = uuid.uuid4().hex[:16]
        secret = ids.secret_token()
        apikey = ApiKey(key_id, user_id, scope, now_ms())
        record = {"u": user_id, "s": scope, "d": ids.digest(secret), "c": apikey.created_at}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.APIKEYS, key_id, codec.pack(record))
            pipe.sadd(keys.user_apikeys(user_id), key_id)
            await pipe.execute()
        return apikey, f"{API_KEY}{key_id}_{secret}"

    async def verify(self, presented: str) -> ApiKey | None:
        if not presented.startswith(API_KEY):
            return None
        key_id, _, secret = presented[len(API_KEY):].partition("_")
        raw = as_bytes(await self._redis.hget(keys.APIKEYS, key_id)) if key_id and secret else None
        if not raw:
            return None
        record = codec.unpack(raw)
        if not hmac.compare_digest(record["d"], ids.digest(secret)):
            return None
        return ApiKey(key_id, record["u"], record["s"], record["c"])

    async def list_for(self, user_id: str | None) -> list[ApiKey]:
        """A user's keys, or every key when user_id is None (admins)."""
        if user_id is None:
            entries = await self._redis.hgetall(keys.APIKEYS)
            items = [(as_bytes(k).decode(), as_bytes(v)) for k, v in entries.items()]
        else:
            members = await self._redis.smembers(keys.user_apikeys(user_id))
            key_ids = sorted(as_bytes(k).decode() for k in members)
            values = await self._redis.hmget(keys.APIKEYS, key_ids) if key_ids else []
            items = [(k, as_bytes(v)) for k, v in zip(key_ids, values) if v]
        keys_ = [ApiKey(k, (r := codec.unpack(v))["u"], r["s"], r["c"]) for k, v in items]
        return sorted(keys_, key=lambda key: key.created_at)

    async def get(self, key_id: str) -> ApiKey | None:
        raw = as_bytes(await self._redis.hget(keys.APIKEYS, key_id))
        if not raw:
            return None
        record = codec.unpack(raw)
        return ApiKey(key_id, record["u"], record["s"], record["c"])

    async def delete(self, apikey: ApiKey) -> bool:
        """Delete the key and every access token exchanged for it, and tell every gateway
        process to close their connections, in one step; False if it was already gone."""
        return bool(await self._delete(
            keys=[keys.APIKEYS, keys.user_apikeys(apikey.user_id), keys.apikey_tokens(apikey.id)],
            args=[apikey.id, keys.token(""), keys.CONTROL_CHANNEL,
                  control.encode(control.ApiKeyDeleted(apikey.id))]))
