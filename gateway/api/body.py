"""Reading request bodies: the one JSON parser every route uses. Bad input is a 400 or 413.

A body is JSON as RFC 8259 defines it, in UTF-8, and only what any client can read back
(contract §2). Refused with a 400, before anything is stored:

- bytes that are not UTF-8, encoded surrogates (``ED A0 80``) included;
- lone surrogates written as escapes (``"\\ud800"``): no UTF-8 encoder, msgpack's included,
  can carry them, so they would fail later, when the value is stored or sent;
- ``NaN``, ``Infinity``, ``-Infinity`` (Python's parser takes them; JSON has no such numbers);
- integers outside 64 bits, floats outside the double range, numbers of more than 4,300 digits;
- nesting deeper than 64 levels, and of course anything unparsable.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from gateway.exceptions import BadRequest, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64  # arrays and objects inside one another; the outermost is level 1
MAX_NUMBER_DIGITS = 4300  # as Python's own int() limit: more is an attack, not a number

# In the raw text: an escape that may decode to a surrogate. Only bodies holding one (rare)
# have their strings checked one by one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# In a decoded string: a surrogate left alone (escaped pairs decode to one character).
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


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
    """The body as a JSON object; an empty body is a 400."""
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise BadRequest("Request body is empty: send a JSON object")
    return _object(parse_json(raw))


async def read_optional_json_object(request: Request,
                                    max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object, or {} when there is none (a route whose fields are all
    optional)."""
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return {}
    return _object(parse_json(raw))


def parse_json(raw: bytes) -> Any:
    """A JSON value from a body's bytes.

    Raises:
        BadRequest: anything but UTF-8 JSON within the limits in this module's docstring.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Request body is not valid UTF-8 (byte {exc.start}): send JSON in "
                         "UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int,
                           parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"Request body is nested deeper than {MAX_DEPTH} levels") from None
    if text.count("[") + text.count("{") > MAX_DEPTH or _SURROGATE_ESCAPE.search(text):
        _check_depth_and_strings(value)
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"Request body must be a JSON object, not {json_type(value)}")
    return value


def _check_depth_and_strings(value: Any) -> None:
    # Iterative: the depth being checked is the one a recursive walk could not survive.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadRequest(f"Request body is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    found = _LONE_SURROGATE.search(text)
    if found:
        raise BadRequest(f"Request body has a lone surrogate (\\u{ord(found.group()):04x}) in a "
                         "string: that is not Unicode text; pair it or leave it out")


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them, no client could read them back.
    raise BadRequest(f"Request body is not valid JSON: {name} is not a JSON number")


def _too_many_digits(text: str) -> BadRequest:
    return BadRequest(f"Request body has a number of more than {MAX_NUMBER_DIGITS} digits: "
                      f"{text[:40]}...")


def _bounded_int(text: str) -> int:
    # Integers are kept as msgpack, which holds 64 bits; JavaScript clients lose precision
    # far earlier, so a larger number is almost surely a mistake.
    # Checked on the digits first: int() refuses over 4,300 digits with a bare ValueError.
    digits = len(text.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        raise _too_many_digits(text)
    if digits > 20 or not -(2**63) <= (value := int(text)) < 2**64:
        raise BadRequest(f"Request body has an integer out of the 64-bit range: {text[:40]}")
    return value


def _finite_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS and sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
        raise _too_many_digits(text)
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
