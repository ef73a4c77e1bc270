"""Who is asking: the user behind a request or a realtime connection."""

from __future__ import annotations

from dataclasses import dataclass

READ = "read"
WRITE = "write"
FULL_SCOPE = frozenset({READ, WRITE})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    login: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scope: frozenset[str] = FULL_SCOPE  # a token with scope "read" may not write
    session_digest: str | None = None  # set when authenticated by the sid cookie
    token_digest: str | None = None  # set when authenticated by a bearer token
    via: str = "session"  # session | token | basic | apikey-token | one-time

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def may_write(self) -> bool:
        return WRITE in self.scope and "readonly" not in self.roles

    def identities(self) -> frozenset[str]:
        """The ids that may appear in an entity's access/branch lists for this user."""
        return frozenset((self.user_id, *self.groups))
