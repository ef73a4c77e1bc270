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
from typing import Any, Protocol

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
    def __init__(self, redis: Redis | None = None, *,
                 forget_user: Callable[[str | None], None] = lambda _: None) -> None:
        self._redis = redis
        # Drops this process's cached user records (one user, or all with None) so that REST
        # sees a changed user at once, like the connections do.
        self._forget_user = forget_user
        self._by_credential: dict[str, set[Watched]] = {}
        self._by_user: dict[str, set[Watched]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        # Counts the user changes heard, so a confirmation read older than one is not applied.
        self._changes: dict[str, int] = {}
        self._confirming: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    # -- registry ------------------------------------------------------------------------
    def register(self, conn: Watched) -> None:
        """File the connection, arm its expiry, and confirm in Redis that nothing ended or
        changed between its handshake's check and now: a control message handled in that gap
        could not find it."""
        self._file(conn)
        if self._redis is not None:
            task = asyncio.get_running_loop().create_task(self._confirm(conn, self._redis))
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)

    def _file(self, conn: Watched) -> None:
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
        if _discard(self._by_user, who.user_id, conn):
            self._changes.pop(who.user_id, None)
        for name in credential_keys(who.credential):
            if _discard(self._by_credential, name, conn) and name in self._expiry:
                self._expiry.pop(name).cancel()

    def _expire(self, name: str) -> None:
        self._expiry.pop(name, None)
        self._close(self._by_credential.get(name, ()), CREDENTIAL_EXPIRED)

    # -- what ends them ------------------------------------------------------------------
    async def _confirm(self, conn: Watched, redis: Redis) -> None:
        who = conn.principal
        changes = self._changes.get(who.user_id, 0)
        names = credential_keys(who.credential)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name in names:
                    _queue_exists(pipe, name)
                pipe.hget(keys.USERS, who.user_id)
                *alive, raw = await pipe.execute()
        except Exception:  # Redis away: the reconnect's revalidate covers this connection
            log.warning("could not confirm a new connection's credential", exc_info=True)
            return
        if who.user_id not in self._by_user or conn not in self._by_user[who.user_id]:
            return  # closed meanwhile
        if not all(alive):
            conn.close(CREDENTIAL_REVOKED)
            return
        record = codec.unpack(raw) if raw else None
        if self._user_ended(record, [conn]):
            return
        if record is not None and self._changes.get(who.user_id, 0) == changes:
            groups, roles = tuple(record.get("groups", ())), tuple(record.get("roles", ()))
            if (groups, roles) != (who.groups, who.roles):
                # all of the user's connections: the hub decides per user, not per socket
                self._apply(who.user_id, groups, roles)

    def _user_ended(self, record: dict[str, object] | None, conns: Iterable[Watched]) -> bool:
        """Close the connections if the user is gone or disabled, and Basic ones whose
        password hash is not the user's any more. True when all of them ended."""
        conns = list(conns)
        if record is None or record.get("disabled"):
            self._close(conns, USER_ENDED)
            return True
        current = hash_fingerprint(str(record.get("password", "")))
        stale = [conn for conn in conns if conn.principal.credential.kind == "basic"
                 and conn.principal.credential.digest != current]
        self._close(stale, USER_ENDED)
        return len(stale) == len(conns)

    def on_control(self, message: control.ControlMessage) -> None:
        if isinstance(message, control.CredentialEnded):
            self._close(self._by_credential.get(f"{message.kind}:{message.digest}", ()),
                        CREDENTIAL_REVOKED)
        elif isinstance(message, control.ApiKeyDeleted):
            self._close(self._by_credential.get(f"apikey:{message.key_id}", ()),
                        CREDENTIAL_REVOKED)
        else:
            self._forget_user(message.user_id)
            self._changes[message.user_id] = self._changes.get(message.user_id, 0) + 1
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
                _queue_exists(pipe, name)
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
            before = len(self._by_user.get(user_id, ()))
            # gone, disabled, or a new password Basic connections didn't check
            if not self._user_ended(record, self._by_user.get(user_id, ())) and record:
                self._apply(user_id, tuple(record.get("groups", ())),
                            tuple(record.get("roles", ())))
            ended += before - len(self._by_user.get(user_id, ()))
        if ended:
            log.info("realtime connections ended after reconnect", extra={"connections": ended})


def _queue_exists(pipe: Any, name: str) -> None:
    """Queue the check that a filed credential still exists in Redis."""
    kind, _, ident = name.partition(":")
    if kind == "session":
        pipe.exists(keys.session(ident))
    elif kind == "token":
        pipe.exists(keys.token(ident))
    else:
        pipe.hexists(keys.APIKEYS, ident)


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
