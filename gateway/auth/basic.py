"""Basic credentials (RFC 7617): an `Authorization: Basic` value to a login and a password.

Pure, no I/O. Whatever cannot be decoded is invalid credentials, a 401 (contract §2) — never a
500 from a decoder's own exception, and never a hang of the realtime handshake that asked.
"""

from __future__ import annotations

import base64
import binascii

from gateway.exceptions import Unauthorized

_SHAPE = "Basic credentials must be the base64 of 'login:password' in UTF-8"


def decode_basic(value: str) -> tuple[str, str]:
    """The login and password in the value after ``Basic``.

    Args:
        value: the header's value after the scheme. Servers hand header bytes over as
            latin-1, so a byte beyond ASCII arrives as a character beyond ASCII.

    Raises:
        Unauthorized: not ASCII, not strict padded base64, not UTF-8 (encoded surrogates
            included), no ':', or an empty login or password.
    """
    token = value.strip()
    # b64decode raises a bare ValueError on non-ASCII text, before any base64 check.
    if not token.isascii():
        raise Unauthorized(f"{_SHAPE}: the header has bytes that are not ASCII")
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(f"{_SHAPE}: it is not base64") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unauthorized(f"{_SHAPE}: the decoded bytes are not UTF-8") from None
    login, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized(f"{_SHAPE}: there is no ':' between login and password")
    if not login or not password:
        raise Unauthorized(f"{_SHAPE}: the login or the password is empty")
    return login, password
