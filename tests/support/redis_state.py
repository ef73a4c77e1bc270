"""What Redis keeps for a store, to prove that a refused request changed nothing."""

from __future__ import annotations

from typing import Any


def snapshot(redis_client: Any, store: str) -> dict[Any, Any]:
    """Every entity key, the creation index and the event history of `store`."""
    state: dict[Any, Any] = {}
    for key in sorted(redis_client.scan_iter(match=f"gw:e:{store}:*")):
        state[key] = redis_client.get(key)
    state["index"] = redis_client.zrange(f"gw:ix:{store}", 0, -1, withscores=True)
    state["history"] = redis_client.xrange(f"gw:history:{store}")
    return state
