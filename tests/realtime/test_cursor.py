"""The per-connection, per-store cursor: merging a replay with held live events, folding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.realtime.cursor import MAX_IDLE_CURSORS, Cursors, matches, merge_by_id


def event(n: int, store: str = "orders", entity: str = "e1") -> dict[str, object]:
    return {"id": f"{1700000000000 + n:013d}-000000", "store": store, "entityId": entity}


def test_merge_keeps_id_order_and_each_id_once() -> None:
    replayed = [event(1), event(2), event(4)]
    held = [event(2), event(3), event(5)]
    assert [e["id"] for e in merge_by_id(replayed, held)] == [event(n)["id"] for n in (1, 2, 3, 4, 5)]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 500)), st.sets(st.integers(0, 500)))
def test_merge_is_the_sorted_union(a: set[int], b: set[int]) -> None:
    merged = merge_by_id([event(n) for n in sorted(a)], [event(n) for n in sorted(b)])
    assert [e["id"] for e in merged] == [event(n)["id"] for n in sorted(a | b)]


def test_topics_match_their_store_and_entity_only() -> None:
    assert matches(("orders", None), event(1))
    assert matches(("orders", "e1"), event(1))
    assert not matches(("orders", "e2"), event(1))
    assert not matches(("invoices", None), event(1))


def test_idle_cursors_fold_into_one_floor_and_active_ones_stay() -> None:
    cursors = Cursors()
    active = cursors.joined("active")
    active.sent_up_to = event(1)["id"]
    for n in range(MAX_IDLE_CURSORS + 10):
        cursor = cursors.joined(f"s{n}")
        cursor.sent_up_to = event(n + 10)["id"]
        cursors.left(f"s{n}")
    assert len(cursors.by_store) <= MAX_IDLE_CURSORS + 1
    assert cursors.by_store["active"] is active
    folded = [n for n in range(MAX_IDLE_CURSORS + 10) if f"s{n}" not in cursors.by_store]
    assert folded
    # everything a folded cursor had offered is at or below the floor, and a store seen
    # again starts there: nothing is sent twice
    assert all(event(n + 10)["id"] <= cursors.floor for n in folded)
    assert cursors.get(f"s{folded[0]}").sent_up_to == cursors.floor


def test_a_new_cursor_starts_at_the_stores_own_last_id_when_below_the_floor() -> None:
    """Ids of different streams can tie in one millisecond: a store's first event of a
    millisecond (`…-000000`) sorts below another store's second (`…-000001`), so a floor taken
    from another store must not hold back this store's next event."""
    cursors = Cursors(floor="1700000000000-000001")
    assert cursors.get("a", seen="1699999999999-000004").sent_up_to == "1699999999999-000004"
    assert cursors.get("b", seen="1700000000001-000000").sent_up_to == "1700000000000-000001"
    assert cursors.get("c").sent_up_to == "1700000000000-000001"
