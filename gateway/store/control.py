"""The control channel: what every gateway process must act on at once, besides events.

Published on ``gw:control`` by whoever changes the state (usually in the same MULTI as the
change itself, so a message is never sent for a change that did not happen), consumed by each
process's realtime hub. Pub/sub is at-most-once: a process that was cut off from Redis misses
messages, so after every reconnect the hub re-checks its connections' credentials and users in
Redis instead of trusting what it was told.

| message          | sent when                                              | every process     |
| ---------------- | ------------------------------------------------------ | ----------------- |
| CredentialEnded  | logout (cookie or bearer), a token or session revoked   | closes what the credential opened (`41`) |
| ApiKeyDeleted    | DELETE /api/v1/apikeys/{id}                             | closes connections opened with its tokens |
| UserChanged      | PATCH/DELETE /api/v1/users/{id}, `gateway users …`     | `ended`: closes every connection of the user; else applies new groups/roles to the next event |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway import codec


@dataclass(frozen=True, slots=True)
class CredentialEnded:
    kind: Literal["session", "token"]
    digest: str


@dataclass(frozen=True, slots=True)
class ApiKeyDeleted:
    key_id: str


@dataclass(frozen=True, slots=True)
class UserChanged:
    user_id: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    ended: bool  # every credential of the user was revoked (new password, disabled, deleted)


ControlMessage = CredentialEnded | ApiKeyDeleted | UserChanged


def encode(message: ControlMessage) -> bytes:
    if isinstance(message, CredentialEnded):
        return codec.pack({"t": "credential", "k": message.kind, "d": message.digest})
    if isinstance(message, ApiKeyDeleted):
        return codec.pack({"t": "apikey", "id": message.key_id})
    return codec.pack({"t": "user", "id": message.user_id, "g": list(message.groups),
                       "r": list(message.roles), "end": message.ended})


def decode(raw: bytes) -> ControlMessage | None:
    """The message, or None for one this version doesn't know (a newer peer's): ignored."""
    value = codec.unpack(raw)
    if not isinstance(value, dict):
        return None
    kind = value.get("t")
    if kind == "credential" and value.get("k") in ("session", "token"):
        return CredentialEnded(value["k"], str(value["d"]))
    if kind == "apikey":
        return ApiKeyDeleted(str(value["id"]))
    if kind == "user":
        return UserChanged(str(value["id"]), tuple(value.get("g", ())),
                           tuple(value.get("r", ())), bool(value.get("end")))
    if "revoke" in value:  # the first release's session revocation
        return CredentialEnded("session", str(value["revoke"]))
    return None
