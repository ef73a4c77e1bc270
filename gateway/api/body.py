"""Reading request bodies and query parameters: every bad input becomes a 400 or 413."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from gateway.exceptions import BadRequest, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024


async def read_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise PayloadTooLarge(f"Request body is larger than {max_bytes} bytes")
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"Request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise BadRequest("Request body is empty: send a JSON object")
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_int=_bounded_int,
                           parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("Request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest(f"Request body must be a JSON object, not {json_type(value)}")
    return value


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them, no client could read them back.
    raise BadRequest(f"Request body is not valid JSON: {name} is not a JSON number")


def _bounded_int(text: str) -> int:
    # Integers are kept as msgpack, which holds 64 bits; JavaScript clients lose precision
    # far earlier, so a larger number is almost surely a mistake.
    # Checked on the digits first: int() refuses over 4,300 digits with a bare ValueError.
    if len(text.lstrip("-")) > 20 or not -(2**63) <= (value := int(text)) < 2**64:
        raise BadRequest(f"Request body has an integer out of the 64-bit range: {text[:40]}")
    return value


def _finite_float(text: str) -> float:
    # 1e400 parses as infinity, which JSON cannot carry back out.
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"Request body has a number out of the double range: {text[:40]}")
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def require_str(body: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a non-empty string")
    return value


def optional_str_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"'{name}' must be an array of strings")
    return value
