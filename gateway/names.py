"""The name rules: stores, logins, event types, hook event patterns, entity ids (contract §2, §4).

One module both `api/` and `realtime/` import, so a name the REST API refuses is refused on a
subscription too. A name is matched whole: every pattern is anchored with ``\\A`` and ``\\Z``
and the checks use ``fullmatch``. ``$`` would not do — in a Python regex it also matches before
a final newline, so ``orders\\n`` would pass for ``orders`` and name a store of its own.

Each ``valid_*`` check takes any value (a JSON field may be of any type) and is a ``TypeGuard``:
true means a ``str`` that is such a name.
"""

from __future__ import annotations

import re
from typing import TypeGuard

STORE = re.compile(r"\A[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
# The first path segments under /api/v1 that are routes, not stores.
RESERVED = frozenset({"auth", "users", "apikeys", "hooks", "events", "tokenInfo"})
STORE_RULE = "a letter, then up to 63 letters, digits, '_' or '-'; not a reserved name"

# No ':' (it would break Basic auth), no white space, no lone surrogates (not encodable as
# UTF-8: such a login could never be stored or sent back).
LOGIN = re.compile(r"\A[^\s:\ud800-\udfff]{1,128}\Z")
LOGIN_RULE = "1 to 128 characters, with no spaces or ':'"

EVENT_TYPE = re.compile(r"\A[A-Za-z][A-Za-z0-9_.:-]{0,127}\Z")
# What a hook may subscribe to besides an exact type: everything, or every type under a prefix.
EVENT_PATTERN = re.compile(r"\A(\*|[A-Za-z][A-Za-z0-9_:-]*(\.[A-Za-z0-9_:-]+)*\.\*)\Z")

OBJECT_ID = re.compile(r"\A[0-9a-f]{24}\Z")


def valid_store(name: object) -> TypeGuard[str]:
    """A store name: a str matching `STORE` whole, and not one of the `RESERVED` names."""
    return isinstance(name, str) and STORE.fullmatch(name) is not None and name not in RESERVED


def valid_login(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and LOGIN.fullmatch(name) is not None


def valid_event_type(name: object) -> TypeGuard[str]:
    """An event's type, such as ``entity.created`` or ``order.shipped``."""
    return isinstance(name, str) and EVENT_TYPE.fullmatch(name) is not None


def valid_event_pattern(name: object) -> TypeGuard[str]:
    """What a hook's ``event`` may be: an event type, ``<prefix>.*`` or ``*``."""
    return valid_event_type(name) or (
        isinstance(name, str) and EVENT_PATTERN.fullmatch(name) is not None)


def valid_object_id(value: object) -> TypeGuard[str]:
    """An entity, user or hook id: 24 lowercase hex characters."""
    return isinstance(value, str) and OBJECT_ID.fullmatch(value) is not None
