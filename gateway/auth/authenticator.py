"""Credentials → Principal, for HTTP routes and realtime handshakes alike.

Order: the ban (a banned address is refused even with correct credentials), then the first
credential present — `Authorization: Bearer`, `Authorization: Basic`, the `sid` cookie, or (on
realtime handshakes) a `token` query parameter — then the user's rate limit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Mapping

from gateway.auth.bans import LoginGuard
from gateway.auth.basic import decode_basic
from gateway.auth.credentials import Sessions, Tokens, now_ms
from gateway.auth.passwords import verify_password
from gateway.auth.passwords import hash_fingerprint
from gateway.auth.principal import BASIC, FULL_SCOPE, Credential, Principal, Via
from gateway.exceptions import BadRequest, Forbidden, Unauthorized
from gateway.store.users import User, Users

SESSION_COOKIE = "sid"


class _VerifiedPasswords:
    """Recently verified Basic credentials, so Basic auth costs about one argon2 hash a minute.

    Keyed by an HMAC under a per-process random key: the cache holds nothing that would let
    anyone recover or replay a password.

    Each entry remembers the password hash it was verified against, and counts only while this
    process's cached record of the user (`Users.peek`) still has that very hash. A new password
    (or a disabled or deleted user) reaches that cache through the control channel on every
    process (the realtime hub calls `Users.forget`), so an old password stops working there as
    soon as the change is heard of, and at the latest when the cached record expires
    (`users.CACHE_TTL_S`) — never after 60 s of its own.
    """

    def __init__(self, users: Users, ttl_s: float = 60.0, size: int = 4096) -> None:
        self._users = users
        self._key = os.urandom(32)
        self._ttl_s = ttl_s
        self._size = size
        self._entries: OrderedDict[bytes, tuple[float, str, str]] = OrderedDict()

    def _fingerprint(self, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{login}\0{password}".encode(), hashlib.sha256).digest()

    def get(self, login: str, password: str) -> str | None:
        """The user id, if this login and password were verified against the user's current
        password hash; else None (verify again)."""
        fingerprint = self._fingerprint(login, password)
        entry = self._entries.get(fingerprint)
        if entry is None or entry[0] < time.monotonic():
            return None
        _, user_id, verified_hash = entry
        current = self._users.peek(user_id)
        if current is None or not hmac.compare_digest(current.password_hash, verified_hash):
            return None
        return user_id

    def put(self, login: str, password: str, user: User) -> None:
        """Remember that `password` matched `user.password_hash` (the record it was checked
        against, not whatever the cache holds by now)."""
        entry = (time.monotonic() + self._ttl_s, user.id, user.password_hash)
        self._entries[self._fingerprint(login, password)] = entry
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Authenticator:
    def __init__(self, *, users: Users, sessions: Sessions, tokens: Tokens,
                 guard: LoginGuard) -> None:
        self.users = users
        self.sessions = sessions
        self.tokens = tokens
        self.guard = guard
        self._verified = _VerifiedPasswords(users)

    async def check_ban(self, address: str) -> None:
        if await self.guard.is_banned(address):
            await self._refuse_banned(address)

    async def _refuse_banned(self, address: str) -> None:
        remaining = max(1, round(await self.guard.ban_remaining_s(address)))
        raise Forbidden(f"Too many failed logins from this address; try again in {remaining} s",
                        headers={"Retry-After": str(remaining)})

    async def _lookup(self, address: str, key: str) -> tuple[bytes | None, int | None]:
        """The ban check and a credential's lookup in one round trip: the hot path of every
        cookie or bearer request. Returns the stored value and when it expires (ms since the
        epoch; None if never): a realtime connection it opens is closed then."""
        banned, value, ttl_ms = await self.guard.exists_and_get(address, key)
        if banned:
            await self._refuse_banned(address)
        return value, (now_ms() + ttl_ms if ttl_ms >= 0 else None)

    async def login(self, login: object, password: object, address: str) -> User:
        """Check a login and password; a failure counts towards the address's ban."""
        if not isinstance(login, str) or not isinstance(password, str) or not login:
            raise BadRequest("'login' and 'password' must be non-empty strings")
        user = await self.users.by_login(login)
        if not await verify_password(user.password_hash if user else None, password) or not user:
            await self.guard.record_failure(address)
            raise Unauthorized("Wrong login or password")
        return self._enabled(user)

    async def authenticate(
        self, *, headers: Mapping[str, str], cookies: Mapping[str, str], address: str,
        query_token: str | None = None,
    ) -> Principal:
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value.strip():
            return await self._from_token(value.strip(), address)
        if scheme == "basic":
            await self.check_ban(address)
            return await self._from_basic(value.strip(), address)
        if authorization:
            await self.check_ban(address)
            raise Unauthorized("Authorization must be 'Bearer <token>' or 'Basic <base64>'")
        sid = cookies.get(SESSION_COOKIE)
        if sid:
            key, digest = self.sessions.key_for(sid)
            user_id, expires_at_ms = await self._lookup(address, key)
            if user_id is None:
                raise Unauthorized("The session has expired or was revoked; log in again")
            user = await self._user(user_id.decode())
            credential = Credential("session", digest, expires_at_ms=expires_at_ms)
            return self._principal(user, FULL_SCOPE, via="session", credential=credential)
        if query_token:
            return await self._from_token(query_token, address)
        await self.check_ban(address)
        raise Unauthorized()

    async def _from_token(self, token: str, address: str) -> Principal:
        expires_at_ms: int | None = None
        if self.tokens.spent_on_use(token):
            await self.check_ban(address)  # before spending it: a banned address keeps it
            record = await self.tokens.resolve(token)
        else:
            key, digest = self.tokens.key_for(token)
            raw, expires_at_ms = await self._lookup(address, key)
            record = await self.tokens.record(raw, digest)
        if record is None:
            raise Unauthorized("The token is invalid or has expired")
        user = await self._user(record.user_id)
        if record.kind == "once":
            credential = record.issuer or BASIC
            via: Via = "once"
        else:
            credential = Credential("token", record.digest, apikey_id=record.apikey_id,
                                    expires_at_ms=expires_at_ms)
            via = record.kind
        return self._principal(user, record.scope, via=via, credential=credential)

    async def _from_basic(self, encoded: str, address: str) -> Principal:
        login, password = decode_basic(encoded)
        user_id = self._verified.get(login, password)
        if user_id is None:
            user = await self.login(login, password, address)
            self._verified.put(login, password, user)
        else:
            user = await self._user(user_id)
        credential = Credential("basic", hash_fingerprint(user.password_hash))
        return self._principal(user, FULL_SCOPE, via="basic", credential=credential)

    async def _user(self, user_id: str) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise Unauthorized("The user behind these credentials no longer exists")
        return self._enabled(user)

    @staticmethod
    def _enabled(user: User) -> User:
        # Told only after the right password (or a live credential): a wrong password never
        # learns whether an account exists or is disabled.
        if user.disabled:
            raise Unauthorized("This account is disabled; an administrator can enable it again")
        return user

    @staticmethod
    def _principal(user: User, scope: frozenset[str], *, via: Via,
                   credential: Credential) -> Principal:
        return Principal(
            user_id=user.id, login=user.login, groups=user.groups, roles=user.roles,
            scope=scope, credential=credential, via=via,
        )
