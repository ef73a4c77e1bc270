"""gateway.api.body: the one JSON body parser. Every input is a value or a BadRequest (400).

Unit cases for each class of malformed input named in contract §2, then Hypothesis properties:
any bytes give a value or a BadRequest, never another exception; a value that JSON, UTF-8 and
msgpack can all carry comes back equal, and one they cannot is refused at parse time.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.body import MAX_DEPTH, MAX_NUMBER_DIGITS, parse_json
from gateway.exceptions import BadRequest

# Seconds, not minutes; no example database written into the working tree.
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def refused(raw: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    return caught.value.message


def nested(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"a": "\xff"}', "UTF-8"),
    (b'{"a": "\xed\xa0\x80"}', "UTF-8"),  # a surrogate, encoded: not UTF-8 either
    (b'{"a": "\xc0\xaf"}', "UTF-8"),  # overlong
    (b'\xef\xbb\xbf{"a": 1}', "BOM"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"a": "\\uDFFF x"}', "surrogate"),
    (b'{"a": ["\\ude00\\ud83d"]}', "surrogate"),  # a pair in the wrong order is two lone ones
    (b'{"\\ud800": 1}', "surrogate"),  # keys too
    (b'"\\ud800"', "surrogate"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e400}', "double range"),
    (b'{"a": 18446744073709551616}', "64-bit"),
    (b'{"a": -9223372036854775809}', "64-bit"),
    (b'{"a": ' + b"1" * (MAX_NUMBER_DIGITS + 1) + b"}", "digits"),
    (b'{"a": -' + b"1" * (MAX_NUMBER_DIGITS + 1) + b"}", "digits"),
    (b'{"a": 0.' + b"1" * (MAX_NUMBER_DIGITS + 1) + b"}", "digits"),
    (nested(MAX_DEPTH + 1), "nested deeper than 64"),
    (nested(2000), "nested deeper than 64"),
    (nested(100_000), "nested deeper than 64"),
    (b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested deeper than 64"),
    (b'{"a": [', "not valid JSON"),
    (b"[" * 5000, "nested"),
    (b'{"a": 1', "not valid JSON"),
    (b'{"a": 1}}', "not valid JSON"),
    (b"", "not valid JSON"),
], ids=lambda case: repr(case)[:40] if isinstance(case, bytes) else None)
def test_malformed_bodies_are_refused_with_a_message_that_says_why(raw: bytes, words: str) -> None:
    assert words in refused(raw)


@pytest.mark.parametrize(("raw", "value"), [
    (nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH))),
    (b'"\\ud83d\\ude00"', "\U0001F600"),  # an escaped pair is one character
    (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text: no surrogate at all
    (b'{"a": "' + b"[" * 100 + b'"}', {"a": "[" * 100}),  # brackets in a string: no nesting
    (b"18446744073709551615", 2**64 - 1),
    (b"-9223372036854775808", -(2**63)),
    (b"1" * 20, int("1" * 20)),
    (b"1e308", 1e308),
    (b" \n\t{}\r\n", {}),
], ids=lambda case: repr(case)[:40] if isinstance(case, bytes) else "")
def test_the_limits_themselves_are_accepted(raw: bytes, value: Any) -> None:
    assert parse_json(raw) == value


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_a_value_or_a_bad_request(raw: bytes) -> None:
    try:
        parse_json(raw)
    except BadRequest:
        pass


def _keep(value: Any) -> bool:
    """Whether contract §2 lets this value through (the parser's limits as an oracle)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return False
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**64:
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        else:
            if depth > MAX_DEPTH:
                return False
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    stack.append((key, depth))
                stack.append((child, depth + 1))
    return True


# Strings with lone surrogates now and then; numbers at and past the edges.
_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)
_scalars = (st.none() | st.booleans() | _text
            | st.integers(min_value=-(2**65), max_value=2**65)
            | st.floats(allow_nan=True, allow_infinity=True))
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(_values, st.booleans())
def test_a_value_comes_back_equal_if_json_utf8_and_msgpack_carry_it_else_400(
        value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    # Raw surrogates (ensure_ascii=False) become the bytes ED A0 80 ... that a client could send.
    raw = text.encode("utf-8", "surrogatepass")
    if not _keep(json.loads(text)):  # escaped surrogates in a pair make one character
        refused(raw)
        return
    parsed = parse_json(raw)
    assert parsed == json.loads(text)
    # What the routes do next must not fail: store it (msgpack) and send it back (UTF-8 JSON).
    msgpack.packb(parsed)
    json.dumps(parsed, allow_nan=False, ensure_ascii=False).encode("utf-8")


@FUZZ
@given(st.integers(min_value=1, max_value=300), st.sampled_from(["[%s]", '{"k": %s}']))
def test_nesting_is_refused_past_64_levels_exactly(depth: int, shape: str) -> None:
    text = "1"
    for _ in range(depth):
        text = shape % text
    if depth > MAX_DEPTH:
        assert "nested" in refused(text.encode())
    else:
        assert parse_json(text.encode()) == json.loads(text)


@FUZZ
@given(st.text(st.sampled_from('{}[]",:0123456789.eE+-\\u tfnrlasNIiy\ud800'), max_size=60))
def test_json_like_noise_is_a_value_or_a_bad_request(text: str) -> None:
    try:
        parse_json(text.encode("utf-8", "surrogatepass"))
    except BadRequest:
        pass
