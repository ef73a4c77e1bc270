"""gateway.names: the name rules, matched whole (contract §2, §4)."""

from __future__ import annotations

import pytest

from gateway.names import (
    LOGIN,
    RESERVED,
    STORE,
    valid_event_pattern,
    valid_event_type,
    valid_login,
    valid_object_id,
    valid_store,
)

LONGEST = "a" + "b" * 63


@pytest.mark.parametrize("name", ["orders", "a", LONGEST, "Order_2-x", "Auth", "tokeninfo"])
def test_store_names(name: str) -> None:
    assert valid_store(name)


@pytest.mark.parametrize("name", [
    "orders\n", "orders\r\n", "\norders", LONGEST + "\n", LONGEST + "c", "", "1orders", "_x",
    "or ders", "orders/x", "ordérs", *sorted(RESERVED), "auth\n", None, 1, ["orders"], b"orders",
])
def test_not_store_names(name: object) -> None:
    assert not valid_store(name)


@pytest.mark.parametrize(("check", "good", "bad"), [
    (valid_login, ["alice", "a" * 128, "ålice", "alice@example.com", "a\x00b"],
     ["alice\n", "alice\r\n", "\nalice", "a" * 129, "", "al ice", "al:ice", "al\tice",
      "\ud800", "alice\udfff", None, 5]),
    (valid_event_type, ["x.y", "entity.created", "a", "order:shipped-2", "a" + "b" * 127],
     ["x.y\n", "x.y\r", ".x", "", "a" + "b" * 128, "x y", "*", "entity.*", None]),
    (valid_event_pattern, ["*", "entity.*", "a.b.*", "x.y", "entity.created"],
     ["*\n", "entity.*\n", "x.y\n", "**", ".*", "entity*", "", None]),
    (valid_object_id, ["0123456789abcdef01234567"],
     ["0123456789abcdef01234567\n", "0123456789ABCDEF01234567", "0123456789abcdef0123456",
      "0123456789abcdef012345678", "", None]),
])
def test_each_rule_takes_exactly_its_names(check, good: list[str], bad: list[object]) -> None:
    assert [name for name in good if not check(name)] == []
    assert [name for name in bad if check(name)] == []


def test_the_patterns_stay_whole_even_for_callers_that_use_match() -> None:
    """`\\Z`, not `$`: a caller's `.match` (the CLI's, say) cannot let a final newline in."""
    assert STORE.match("orders\n") is None
    assert LOGIN.match("alice\n") is None
