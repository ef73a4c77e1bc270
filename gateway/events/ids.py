"""Event ids: Redis stream ids made to sort as strings.

A stream id is "<ms>-<seq>"; as strings "…-10" sorts before "…-9". We zero-pad both parts
(13 digits of ms last until the year 2286; 6 of sequence outnumber the events Redis can append
in one millisecond), so event ids compare correctly as plain strings in any client.
"""

from __future__ import annotations

import re

# [0-9], not \d (which takes any Unicode digit), matched whole (`$` would allow a final "\n")
EVENT_ID = re.compile(r"([0-9]{13})-([0-9]{6})")


def from_stream_id(stream_id: bytes | str) -> str:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return f"{int(ms):013d}-{int(seq):06d}"


def to_stream_id(event_id: str) -> str | None:
    """The stream id for an event id, or None when it is not one of ours."""
    match = EVENT_ID.fullmatch(event_id)
    if match is None:
        return None
    return f"{int(match.group(1))}-{int(match.group(2))}"


# The same formatting, for the Lua script that appends events (it must match from_stream_id).
LUA_FORMAT = """
local function event_id(stream_id)
  local dash = string.find(stream_id, '-', 1, true)
  return string.format('%013d-%06d', tonumber(string.sub(stream_id, 1, dash - 1)),
                       tonumber(string.sub(stream_id, dash + 1)))
end
"""
