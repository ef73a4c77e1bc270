"""Reading a store's retained events: what `subscribe` with `since` replays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import codec
from gateway.events.ids import from_stream_id, to_stream_id
from gateway.store import keys
from gateway.store.redis import Redis
from gateway.store.replies import stream_range


class BadSince(ValueError):
    """`since` is not an event id of ours."""


@dataclass(frozen=True, slots=True)
class Replay:
    recovered: bool  # False: events after `since` may have been trimmed away
    events: list[dict[str, Any]]


def _event(stream_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    return {"id": from_stream_id(stream_id), **codec.unpack(fields[b"e"])}


async def events_after(redis: Redis, store: str, since: str, *, count: int = 100_000,
                       skip_to: str | None = None) -> Replay:
    """Every retained event of `store` after `since`, oldest first.

    `recovered` is True when nothing can be missing: `since` is itself still retained (so all
    later events are too), or it is not older than the oldest retained event. `skip_to`: the
    caller has every event up to this id already, so only later ones are read (`recovered`
    still speaks of `since`).
    """
    stream_id = to_stream_id(since)
    if stream_id is None:
        raise BadSince(since)
    read_from = stream_id
    if skip_to is not None and skip_to > since:
        read_from = to_stream_id(skip_to) or stream_id
    key = keys.history(store)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrange(key, min="(" + read_from, max="+", count=count)
        pipe.xrange(key, min="-", max="+", count=1)
        pipe.xrange(key, min=stream_id, max=stream_id, count=1)
        later, oldest, itself = await pipe.execute()
    if itself or not oldest:
        recovered = True
    else:
        recovered = from_stream_id(oldest[0][0]) <= since
    return Replay(recovered, [_event(sid, fields) for sid, fields in later])


async def latest_event_id(redis: Redis, store: str) -> str | None:
    newest = stream_range(await redis.xrevrange(keys.history(store), count=1))
    return from_stream_id(newest[0][0]) if newest else None
