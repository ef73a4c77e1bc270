"""Who may read and write an entity (contract §4). Pure functions: the API, the realtime
fan-out and the hook matcher all decide with these, so they can never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Reader(Protocol):
    # Read-only members, so frozen dataclasses (Principal) satisfy the protocol.
    @property
    def user_id(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...

    @property
    def is_admin(self) -> bool: ...


def _ids(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def may_read(who: Reader, entity: Mapping[str, Any]) -> bool:
    if who.is_admin or entity.get("owner") == who.user_id:
        return True
    group = entity.get("group")
    if group is not None and group in who.groups:
        return True
    return _listed(who, entity.get("access")) or _listed(who, entity.get("branch"))


def may_write(who: Reader, entity: Mapping[str, Any]) -> bool:
    return who.is_admin or entity.get("owner") == who.user_id or _listed(who, entity.get("access"))


def _listed(who: Reader, ids: Any) -> bool:
    for item in _ids(ids):
        if item == who.user_id or item in who.groups:
            return True
    return False
