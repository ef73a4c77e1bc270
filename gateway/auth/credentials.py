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
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from gateway import codec, ids
from gateway.auth.principal import Credential
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import as_bytes

LOGIN_TOKEN = "gwt_"
ACCESS_TOKEN = "gwa_"
ONE_TIME_TOKEN = "ott_"
API_KEY = "gwk_"


def now_ms() -> int:
    return int(time.time() * 1000)


class Sessions:
    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s

    async def create(self, user_id: str) -> tuple[str, int]:
        """A new session id and its expiry (ms since the epoch)."""
        sid = ids.secret_token()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.session(ids.digest(sid)), user_id, ex=self.ttl_s)
            await pipe.execute()
        return sid, now_ms() + self.ttl_s * 1000

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

    async def revoke(self, digest: str) -> None:
        """Delete the session and tell every gateway process to close its connections."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.session(digest))
            pipe.publish(keys.CONTROL_CHANNEL, codec.pack({"revoke": digest}))
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

    async def issue(self, user_id: str, *, kind: TokenKind, scope: frozenset[str], ttl_s: int,
                    extra: dict[str, Any] | None = None,
                    issuer: Credential | None = None) -> tuple[str, int, int]:
        """A new token, its issue time and its expiry (both ms since the epoch).

        A one-time token records its `issuer`: the connection it opens lives as long as that.
        """
        prefix = {"login": LOGIN_TOKEN, "access": ACCESS_TOKEN, "once": ONE_TIME_TOKEN}[kind]
        token = ids.secret_token(prefix)
        issued = now_ms()
        record = {"u": user_id, "s": sorted(scope), "k": kind, **(extra or {})}
        if issuer is not None:
            record["i"] = _pack_credential(issuer)
        await self._redis.set(keys.token(ids.digest(token)), codec.pack(record), ex=ttl_s)
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
        if issuer is not None and not await self._alive(issuer):
            return None
        return TokenRecord(record["u"], frozenset(record["s"]), record["k"], digest,
                           apikey_id=record.get("key"), issuer=issuer)

    async def _alive(self, credential: Credential) -> bool:
        if credential.kind == "session" and credential.digest:
            return bool(await self._redis.exists(keys.session(credential.digest)))
        if credential.kind == "token" and credential.digest:
            if not await self._redis.exists(keys.token(credential.digest)):
                return False
            if credential.apikey_id:
                return bool(await self._redis.hexists(keys.APIKEYS, credential.apikey_id))
        return True

    async def revoke(self, digest: str) -> None:
        await self._redis.delete(keys.token(digest))


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: str
    scope: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "createdAt": self.created_at}


class ApiKeys:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

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

    async def delete(self, apikey: ApiKey) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.APIKEYS, apikey.id)
            pipe.srem(keys.user_apikeys(apikey.user_id), apikey.id)
            await pipe.execute()
