"""Who is asking: the user behind a request or a realtime connection, and the credential used.

A realtime connection lives no longer than the credential that opened it (contract §3), so the
principal names that credential precisely enough for every process to find the connections it
opened when it ends: by its digest (a session or a token), by the API key a token came from, or
by the user (Basic auth ends only with the user's password, account or deletion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

READ = "read"
WRITE = "write"
FULL_SCOPE = frozenset({READ, WRITE})

CredentialKind = Literal["session", "token", "basic"]
Via = Literal["session", "login", "access", "basic", "once"]


@dataclass(frozen=True, slots=True)
class Credential:
    """The credential whose end is the end of what it opened.

    For a one-time token this is the credential that *issued* it: the token itself is spent by
    the handshake, and the connection lives as long as the issuer.
    """

    kind: CredentialKind
    # SHA-256 of a session id or token; for Basic, `passwords.hash_fingerprint` of the
    # password hash it was checked against (a new password ends it)
    digest: str | None = None
    apikey_id: str | None = None  # the API key an access token was exchanged for
    expires_at_ms: int | None = None  # None: no expiry of its own (Basic, API keys)


BASIC = Credential("basic")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    login: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scope: frozenset[str] = FULL_SCOPE  # a token with scope "read" may not write
    credential: Credential = field(default=BASIC)
    via: Via = "session"  # how this request authenticated (a one-time token: "once")

    @property
    def session_digest(self) -> str | None:
        """Set when authenticated by the sid cookie."""
        return self.credential.digest if self.via == "session" else None

    @property
    def token_digest(self) -> str | None:
        """Set when authenticated by a bearer token (not a one-time token: it is spent)."""
        return self.credential.digest if self.via in ("login", "access") else None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def may_write(self) -> bool:
        return WRITE in self.scope and "readonly" not in self.roles

    def identities(self) -> frozenset[str]:
        """The ids that may appear in an entity's access/branch lists for this user."""
        return frozenset((self.user_id, *self.groups))
