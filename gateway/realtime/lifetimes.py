"""A credential's end is its connections' end (contract §3): which connections each credential
and each user opened in this process, and ending them when those end.

    control channel ─► on_control ─┬─ CredentialEnded ─► close what that session/token opened
    (every process)                ├─ ApiKeyDeleted   ─► close what its access tokens opened
                                   └─ UserChanged     ─► ended: close all of the user's
                                                         else: new groups/roles, next event on
    expiry ─► one timer per credential (loop.call_at, not a task) ─► close at its expiry

Closing sends `41` before the close (`disconnect.CREDENTIAL_*`): the client must not reconnect
with what it has. Pub/sub is at-most-once, so after the listener reconnects to Redis
`revalidate` checks every watched credential and user in Redis (one pipeline) instead of
trusting that no message was missed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from gateway import codec
from gateway.auth.passwords import hash_fingerprint
from gateway.auth.principal import Credential, Principal
from gateway.realtime.disconnect import (
    CREDENTIAL_EXPIRED,
    CREDENTIAL_REVOKED,
    USER_ENDED,
    Disconnect,
)
from gateway.store import control, keys
from gateway.store.redis import Redis

log = logging.getLogger(__name__)


class Watched(Protocol):
    principal: Principal

    def close(self, why: Disconnect) -> None: ...


def credential_keys(credential: Credential) -> list[str]:
    """The names a credential's connections are filed under (its own, its API key's)."""
    names = []
    if credential.digest and credential.kind != "basic":  # Basic ends with its user
        names.append(f"{credential.kind}:{credential.digest}")
    if credential.apikey_id:
        names.append(f"apikey:{credential.apikey_id}")
    return names


class Lifetimes:
    def __init__(self, *, forget_user: Callable[[str | None], None] = lambda _: None) -> None:
        # Drops this process's cached user records (one user, or all with None) so that REST
        # sees a changed user at once, like the connections do.
        self._forget_user = forget_user
        self._by_credential: dict[str, set[Watched]] = {}
        self._by_user: dict[str, set[Watched]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    # -- registry ------------------------------------------------------------------------
    def register(self, conn: Watched) -> None:
        who = conn.principal
        self._by_user.setdefault(who.user_id, set()).add(conn)
        names = credential_keys(who.credential)
        for name in names:
            self._by_credential.setdefault(name, set()).add(conn)
        expires_at_ms = who.credential.expires_at_ms
        if expires_at_ms is None or not names or names[0] in self._expiry:
            return
        # One timer per credential, however many connections it opened; the loop keeps
        # timers in a heap, so 20k of them cost no task and no sweep.
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, expires_at_ms / 1000 - time.time())
        self._expiry[names[0]] = loop.call_at(loop.time() + delay_s, self._expire, names[0])

    def unregister(self, conn: Watched) -> None:
        who = conn.principal
        _discard(self._by_user, who.user_id, conn)
        for name in credential_keys(who.credential):
            if _discard(self._by_credential, name, conn) and name in self._expiry:
                self._expiry.pop(name).cancel()

    def _expire(self, name: str) -> None:
        self._expiry.pop(name, None)
        self._close(self._by_credential.get(name, ()), CREDENTIAL_EXPIRED)

    # -- what ends them ------------------------------------------------------------------
    def on_control(self, message: control.ControlMessage) -> None:
        if isinstance(message, control.CredentialEnded):
            self._close(self._by_credential.get(f"{message.kind}:{message.digest}", ()),
                        CREDENTIAL_REVOKED)
        elif isinstance(message, control.ApiKeyDeleted):
            self._close(self._by_credential.get(f"apikey:{message.key_id}", ()),
                        CREDENTIAL_REVOKED)
        else:
            self._forget_user(message.user_id)
            if message.ended:
                self._close(self._by_user.get(message.user_id, ()), USER_ENDED)
            else:
                self._apply(message.user_id, message.groups, message.roles)

    def _apply(self, user_id: str, groups: tuple[str, ...], roles: tuple[str, ...]) -> None:
        """New groups and roles decide the next event each of the user's connections is sent:
        the hub reads `conn.principal` per event."""
        for conn in self._by_user.get(user_id, ()):
            conn.principal = dataclasses.replace(conn.principal, groups=groups, roles=roles)

    @staticmethod
    def _close(conns: Iterable[Watched], why: Disconnect) -> None:
        for conn in list(conns):  # closing unregisters: walk a copy
            conn.close(why)

    async def revalidate(self, redis: Redis) -> None:
        """After a reconnect: end what ended while this process could not hear about it."""
        self._forget_user(None)
        names = sorted(self._by_credential)
        user_ids = sorted(self._by_user)
        if not names and not user_ids:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                kind, _, ident = name.partition(":")
                if kind == "session":
                    pipe.exists(keys.session(ident))
                elif kind == "token":
                    pipe.exists(keys.token(ident))
                else:
                    pipe.hexists(keys.APIKEYS, ident)
            if user_ids:
                pipe.hmget(keys.USERS, user_ids)
            replies = await pipe.execute()
        ended = 0
        for name, alive in zip(names, replies):
            if not alive and name in self._by_credential:
                ended += len(self._by_credential[name])
                self._close(self._by_credential[name], CREDENTIAL_REVOKED)
        records = replies[len(names)] if user_ids else []
        for user_id, raw in zip(user_ids, records):
            record = codec.unpack(raw) if raw else None
            conns = self._by_user.get(user_id, ())
            if record is None or record.get("disabled"):
                ended += len(conns)
                self._close(conns, USER_ENDED)
                continue
            # A new password while we weren't listening: Basic connections checked the old one.
            current = hash_fingerprint(str(record.get("password", "")))
            stale = [conn for conn in conns if conn.principal.credential.kind == "basic"
                     and conn.principal.credential.digest != current]
            ended += len(stale)
            self._close(stale, USER_ENDED)
            self._apply(user_id, tuple(record.get("groups", ())), tuple(record.get("roles", ())))
        if ended:
            log.info("realtime connections ended after reconnect", extra={"connections": ended})


def _discard(index: dict[str, set[Watched]], name: str, conn: Watched) -> bool:
    """Remove conn from index[name]; True when that leaves nothing under the name."""
    conns = index.get(name)
    if conns is None:
        return False
    conns.discard(conn)
    if conns:
        return False
    del index[name]
    return True
