"""JSONP polling: wrapping text payloads as JavaScript and unwrapping form-encoded posts.

Spec: engine.io-protocol v3, "Transports / Polling / JSONP". A JSONP poll (``j=<n>`` in the
query) is answered with ``___eio[<n>]("<payload>");`` and the client posts
``d=<payload>`` form-encoded, with newlines pre-escaped as ``\\n``. Payloads here are text
(encode them with ``binary_ok=False``).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from .errors import LocalProtocolError, PayloadDecodeError

__all__ = ["decode_form", "encode_response"]

_NON_DIGITS = re.compile(r"[^0-9]")
# The client writes a real newline as the two characters ``\n`` and an escaped one
# (``\\n`` in the payload) as ``\\\n``; undo both, in this order (as node does).
_ESCAPED_NEWLINE = re.compile(r"(\\)?\\n")


def encode_response(payload: str, index: str) -> str:
    """Wrap a text payload as the JavaScript a JSONP poll expects.

    Args:
        payload: an encoded text payload.
        index: the ``j`` query parameter; anything but digits is dropped.
    """
    if not isinstance(payload, str):
        raise LocalProtocolError("JSONP payloads must be text; encode with binary_ok=False")
    # JSON is not a subset of JavaScript before ES2019: U+2028/U+2029 end a JS string
    # literal, so they are escaped on top of what JSON needs.
    literal = (
        json.dumps(payload, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return "___eio[" + _NON_DIGITS.sub("", index) + "](" + literal + ");"


def decode_form(body: str | bytes) -> str:
    """Extract the payload from a JSONP POST body (``d=<escaped payload>``).

    Raises:
        PayloadDecodeError: the body is not form-encoded UTF-8 or has no ``d`` field.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadDecodeError("JSONP body is not UTF-8") from None
    if not isinstance(body, str):
        raise PayloadDecodeError(f"JSONP body must be str or bytes, not {type(body).__name__}")
    try:
        fields = parse_qs(body, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise PayloadDecodeError("JSONP body is not form-encoded") from None
    values = fields.get("d")
    if not values:
        raise PayloadDecodeError("JSONP body has no 'd' field")
    data = _ESCAPED_NEWLINE.sub(lambda m: m.group(0) if m.group(1) else "\n", values[0])
    return data.replace("\\\\n", "\\n")
