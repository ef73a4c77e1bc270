"""gateway.auth.basic: an `Authorization: Basic` value is a login and a password, or a 401.

Header bytes reach us as latin-1 text, so "any header value" is any text of code points up to
U+00FF; the properties also try any text at all, and round-trip every login and password.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth.basic import decode_basic
from gateway.exceptions import Unauthorized

FUZZ = settings(max_examples=500, deadline=None, database=None)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def refused(value: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        decode_basic(value)
    assert caught.value.status == 401
    return caught.value.message


@pytest.mark.parametrize(("value", "words"), [
    ("\xe9\xe9", "not ASCII"),  # the bytes E9 E9 on the wire (issue 8, row 10)
    (b64(b"alice:pw") + "\xe9", "not ASCII"),
    ("\u20ac", "not ASCII"),
    ("!!!!", "not base64"),
    ("YWxpY2U6cHc", "not base64"),  # padding missing
    ("YWxp Y2U6cHc=", "not base64"),
    (b64(b"alice:\xff"), "not UTF-8"),
    (b64(b"\xed\xa0\x80:pw"), "not UTF-8"),  # an encoded lone surrogate
    (b64(b"alice:\xc0\xaf"), "not UTF-8"),
    (b64(b"alice"), "no ':'"),
    (b64(b":pw"), "empty"),
    (b64(b"alice:"), "empty"),
    ("", "no ':'"),
])
def test_undecodable_credentials_are_401_with_the_reason(value: str, words: str) -> None:
    assert words in refused(value)


def test_the_password_may_hold_colons_and_the_value_may_be_padded_with_spaces() -> None:
    assert decode_basic("  " + b64("ålice:p:w:€".encode()) + " ") == ("ålice", "p:w:€")


@FUZZ
@given(st.text(st.characters(max_codepoint=0xFF), max_size=40))
def test_any_header_value_is_credentials_or_401(value: str) -> None:
    try:
        login, password = decode_basic(value)
    except Unauthorized:
        return
    assert login and password and ":" not in login
    (login + password).encode("utf-8")  # strict: what the rest of auth does with them


@FUZZ
@given(st.text(st.characters() | st.characters(categories=["Cs"]), max_size=40))
def test_any_text_at_all_is_credentials_or_401(value: str) -> None:
    try:
        decode_basic(value)
    except Unauthorized:
        pass


@FUZZ
@given(st.binary(max_size=40))
def test_any_decoded_bytes_are_credentials_or_401(raw: bytes) -> None:
    try:
        login, password = decode_basic(b64(raw))
    except Unauthorized:
        return
    assert f"{login}:{password}".encode("utf-8") == raw


_no_colon = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=":"), min_size=1,
                    max_size=20)


@FUZZ
@given(_no_colon, st.text(min_size=1, max_size=20))
def test_every_login_and_password_round_trip(login: str, password: str) -> None:
    assert decode_basic(b64(f"{login}:{password}".encode())) == (login, password)
