"""JSONP polling: the JavaScript wrapper and form-encoded POST bodies."""

from __future__ import annotations

import pytest

from gateway.protocol import engineio_v3, jsonp
from gateway.protocol.engineio import Packet, PacketType
from gateway.protocol.errors import LocalProtocolError, PayloadDecodeError


def test_response_wraps_payload_in_eio_callback() -> None:
    assert jsonp.encode_response("6:4hello", "4") == '___eio[4]("6:4hello");'


def test_response_escapes_quotes_backslashes_and_control_characters() -> None:
    assert jsonp.encode_response('4"a\\b\n\x01', "0") == '___eio[0]("4\\"a\\\\b\\n\\u0001");'


def test_response_escapes_line_and_paragraph_separators_for_javascript() -> None:
    assert jsonp.encode_response("4\u2028\u2029€", "1") == '___eio[1]("4\\u2028\\u2029€");'


def test_response_index_keeps_only_digits() -> None:
    assert jsonp.encode_response("1:6", "1);alert(1") == '___eio[11]("1:6");'


def test_response_refuses_binary_payloads() -> None:
    with pytest.raises(LocalProtocolError):
        jsonp.encode_response(b"\x00", "0")  # type: ignore[arg-type]


def test_form_body_yields_the_payload() -> None:
    assert jsonp.decode_form("d=6%3A4hello") == "6:4hello"
    assert jsonp.decode_form(b"d=3%3A4%E2%82%AC") == "3:4€"


def test_form_body_unescapes_newlines_like_node() -> None:
    # client: a newline is sent as \n, an escaped newline (\n in the data) as \\n
    assert jsonp.decode_form("d=4%3A4a%5Cnb") == "4:4a\nb"
    assert jsonp.decode_form("d=5%3A4a%5C%5Cnb") == "5:4a\\nb"


def test_form_body_round_trips_through_the_v3_codec() -> None:
    packets = [Packet(PacketType.MESSAGE, "é😀")]
    body = "d=" + "".join(f"%{b:02X}" for b in str(engineio_v3.encode_payload(packets)).encode())
    assert engineio_v3.decode_payload(jsonp.decode_form(body)) == packets


@pytest.mark.parametrize("body", ["", "x=1", b"d=\xff", b"\xff\xfe"])
def test_malformed_form_bodies_raise_payload_decode_error(body: str | bytes) -> None:
    with pytest.raises(PayloadDecodeError):
        jsonp.decode_form(body)
