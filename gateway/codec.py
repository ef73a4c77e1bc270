"""msgpack for everything the gateway keeps in or sends through Redis."""

from __future__ import annotations

from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)  # msgpack is untyped
    return packed


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
