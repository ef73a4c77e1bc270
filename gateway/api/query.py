"""List query parameters (contract §4): offset, limit, only, meta, from/to (begin/end)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from starlette.datastructures import QueryParams

from gateway.exceptions import BadRequest
from gateway.store.entities import Bounds

MAX_LIMIT = 10000
# Redis takes a signed 64-bit LIMIT offset; no store holds this many entities, so any larger
# offset means the same thing: past the end.
MAX_OFFSET = 2**62
KNOWN = frozenset({"offset", "limit", "only", "meta", "from", "to", "begin", "end",
                   "_"})  # "_": the cache-buster jQuery and others append
FIELD = re.compile(r"[^,\s]{1,256}")  # matched whole (fullmatch)


@dataclass(frozen=True, slots=True)
class ListQuery:
    offset: int
    limit: int
    only: tuple[str, ...] | None
    meta: bool
    bounds: Bounds


def _single(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given more than once")
    return values[0] if values else None


def _whole(params: QueryParams, name: str, default: int, maximum: int | None = None) -> int:
    raw = _single(params, name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,30}", raw.strip()):
        raise BadRequest(f"'{name}' must be a whole number of 0 or more, not {raw!r}")
    value = int(raw)
    if maximum is not None and value > maximum:
        raise BadRequest(f"'{name}' may be at most {maximum}, not {value}")
    return value


def parse_time(name: str, raw: str) -> int:
    """Milliseconds since the epoch, from a number of ms or an ISO 8601 date/time."""
    text = raw.strip()
    if re.fullmatch(r"-?\d{1,30}", text):
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"'{name}' must be milliseconds since the epoch or an ISO 8601 date, not {raw!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _bound(params: QueryParams, name: str, synonym: str) -> int | None:
    value, other = _single(params, name), _single(params, synonym)
    if value is not None and other is not None:
        raise BadRequest(f"'{name}' and '{synonym}' mean the same; give one")
    raw = value if value is not None else other
    return None if raw is None else parse_time(name if value is not None else synonym, raw)


def parse_list_query(params: QueryParams) -> ListQuery:
    unknown = sorted(set(params.keys()) - KNOWN)
    if unknown:
        raise BadRequest(f"Unknown query parameters {unknown}; known: offset, limit, only, "
                         "meta, from, to, begin, end")
    meta_raw = _single(params, "meta")
    if meta_raw not in (None, "true", "false", "1", "0"):
        raise BadRequest(f"'meta' must be true or false, not {meta_raw!r}")
    meta = meta_raw in ("true", "1")
    if meta and ("offset" in params or "limit" in params):
        raise BadRequest("'meta=true' counts the whole range: it takes no 'offset' or 'limit'")
    only_raw = _single(params, "only")
    only = None
    if only_raw is not None:
        only = tuple(field.strip() for field in only_raw.split(",") if field.strip())
        if not only or not all(FIELD.fullmatch(field) for field in only):
            raise BadRequest("'only' must be a comma-separated list of field names")
    start, end = _bound(params, "from", "begin"), _bound(params, "to", "end")
    if start is not None and end is not None and start > end:
        raise BadRequest("'from' is after 'to'")
    return ListQuery(
        offset=min(_whole(params, "offset", 0), MAX_OFFSET),
        limit=_whole(params, "limit", MAX_LIMIT, MAX_LIMIT),
        only=only,
        meta=meta,
        bounds=Bounds(start, end),
    )
