"""Redis replies as our clients get them, for the type checker.

redis-py types every string in a reply as `bytes | str`, and some replies as the union of
every shape the command can take (RESP2 or RESP3, with or without scores): one client type
covers `decode_responses=True` and the other protocol. Ours are always RESP2 clients that
don't decode (`store.redis.client_for`), so strings are bytes and each command has one shape.
These functions say so; each is a `cast`, free at run time, and returns its argument as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, overload

if TYPE_CHECKING:
    from redis.typing import StreamRangeResponse, XReadGroupResponse, ZSetRangeResponse

StreamEntry = tuple[bytes, dict[bytes, bytes] | None]
"""A stream entry: its id, and its fields (None for one deleted after it was delivered)."""


@overload
def as_bytes(reply: bytes | str) -> bytes: ...
@overload
def as_bytes(reply: bytes | str | None) -> bytes | None: ...
def as_bytes(reply: bytes | str | None) -> bytes | None:
    """A string reply (GET, HGET, an element of MGET, HMGET, SMEMBERS, HGETALL)."""
    return cast("bytes | None", reply)


def zset_members(reply: ZSetRangeResponse) -> list[bytes]:
    """The members of a ZRANGE-family reply asked for without scores."""
    return cast("list[bytes]", reply)


def stream_range(reply: StreamRangeResponse | None) -> list[StreamEntry]:
    """The entries of an XRANGE or XREVRANGE reply."""
    return cast("list[StreamEntry]", reply)


def stream_read(reply: XReadGroupResponse | None) -> list[StreamEntry]:
    """The entries of an XREAD or XREADGROUP reply, every stream's in turn, in order.

    RESP2 replies `[[stream, [entry, ...]], ...]`, or None when BLOCK timed out.
    """
    streams = cast("list[list[Any]] | None", reply)
    return [entry for _stream, entries in streams for entry in entries] if streams else []
