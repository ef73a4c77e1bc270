"""Socket.IO packet codec: exact strings both ways, binary attachments, malformed input."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol.errors import LocalProtocolError, SocketIODecodeError
from gateway.protocol.socketio import Decoder, SIOPacket, SIOType, encode, encode_broadcast

T = SIOType


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (SIOPacket(T.CONNECT), "0"),
        (SIOPacket(T.CONNECT, "/admin"), "0/admin,"),
        (SIOPacket(T.CONNECT, "/admin", {"sid": "oSO0"}), '0/admin,{"sid":"oSO0"}'),
        (SIOPacket(T.CONNECT, "/", {"token": "123"}), '0{"token":"123"}'),
        (SIOPacket(T.DISCONNECT), "1"),
        (SIOPacket(T.DISCONNECT, "/admin"), "1/admin,"),
        (SIOPacket(T.EVENT, "/", ["hello", 1]), '2["hello",1]'),
        (SIOPacket(T.EVENT, "/admin", ["bar"]), '2/admin,["bar"]'),
        (SIOPacket(T.EVENT, "/", ["foo"], 12), '212["foo"]'),
        (SIOPacket(T.EVENT, "/admin", ["project:delete", 123], 456), '2/admin,456["project:delete",123]'),
        (SIOPacket(T.ACK, "/admin", [], 456), "3/admin,456[]"),
        (SIOPacket(T.ACK, "/", ["bar"], 0), '30["bar"]'),
        (SIOPacket(T.CONNECT_ERROR, "/", {"message": "Not authorized"}), '4{"message":"Not authorized"}'),
        (SIOPacket(T.CONNECT_ERROR, "/admin", "Not authorized"), '4/admin,"Not authorized"'),
        (SIOPacket(T.EVENT, "/", ["é", "😀", "\u2028"]), '2["é","😀","\u2028"]'),
    ],
)
def test_text_packets_encode_and_decode_to_the_exact_wire_string(packet: SIOPacket, wire: str) -> None:
    assert encode(packet) == (wire, [])
    assert Decoder().feed(wire) == packet


def test_binary_event_uses_placeholders_and_attachment_count() -> None:
    packet = SIOPacket(T.EVENT, "/", ["baz", b"\x01\x02\x03\x04"])
    assert encode(packet) == ('51-["baz",{"_placeholder":true,"num":0}]', [b"\x01\x02\x03\x04"])


def test_binary_event_with_namespace_ack_and_nested_buffers() -> None:
    packet = SIOPacket(T.EVENT, "/admin", ["baz", b"\x01\x02", {"k": [b"\x03\x04"]}], 7)
    assert encode(packet) == (
        '52-/admin,7["baz",{"_placeholder":true,"num":0},{"k":[{"_placeholder":true,"num":1}]}]',
        [b"\x01\x02", b"\x03\x04"],
    )


def test_binary_ack_encodes_as_type_6() -> None:
    assert encode(SIOPacket(T.ACK, "/", ["bar", b"\x01"], 15)) == (
        '61-15["bar",{"_placeholder":true,"num":0}]',
        [b"\x01"],
    )


def test_decoder_reassembles_binary_event_from_attachments() -> None:
    decoder = Decoder()
    assert decoder.feed('52-/admin,7["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]') is None
    assert decoder.awaiting_attachments
    assert decoder.feed(b"first") is None
    assert decoder.feed(b"second") == SIOPacket(T.EVENT, "/admin", ["x", b"second", b"first"], 7)
    assert not decoder.awaiting_attachments
    assert decoder.feed('2["next"]') == SIOPacket(T.EVENT, "/", ["next"])


def test_decoder_reassembles_binary_ack() -> None:
    decoder = Decoder()
    assert decoder.feed('61-15[{"_placeholder":true,"num":0}]') is None
    assert decoder.feed(b"\x03\x02\x01") == SIOPacket(T.ACK, "/", [b"\x03\x02\x01"], 15)


def test_binary_event_with_zero_attachments_is_complete_at_once() -> None:
    assert Decoder().feed('50-["x"]') == SIOPacket(T.EVENT, "/", ["x"])


def test_decode_round_trips_every_encoded_binary_packet() -> None:
    packet = SIOPacket(T.EVENT, "/n", ["e", {"a": b"1", "b": [b"2", 3, None]}], 99)
    text, attachments = encode(packet)
    decoder = Decoder()
    results = [decoder.feed(text)] + [decoder.feed(a) for a in attachments]
    assert results[-1] == packet


def test_broadcast_is_the_engineio_message_text_shared_by_both_versions() -> None:
    assert encode_broadcast("/", "entity.created", {"id": "1"}) == '42["entity.created",{"id":"1"}]'
    assert encode_broadcast("/x", "e") == '42/x,["e"]'


def test_broadcast_refuses_binary_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        encode_broadcast("/", "e", b"\x00")


@pytest.mark.parametrize(
    "data",
    [float("nan"), object(), {1: float("inf")}],
)
def test_unencodable_data_raises_local_protocol_error(data: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode(SIOPacket(T.EVENT, "/", ["e", data]))


def test_binary_data_outside_event_and_ack_raises_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode(SIOPacket(T.CONNECT, "/", {"k": b"x"}))


def test_namespace_without_leading_slash_raises_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode(SIOPacket(T.EVENT, "admin", ["e"]))


@pytest.mark.parametrize(
    "wire",
    [
        "",  # empty
        "7",  # unknown type
        "x",  # not a type
        '2["x"',  # bad JSON
        "2[NaN]",  # JSON constant JavaScript refuses
        '2{"a":1}',  # EVENT payload not an array
        "2[]",  # EVENT without a name
        "2[true]",  # event name neither string nor number
        '2["disconnect"]',  # reserved event name
        "2",  # EVENT without payload
        '1["x"]',  # DISCONNECT with payload
        '0["x"]',  # CONNECT payload not an object
        "3[]",  # ACK without id
        '3{"a":1}',  # ACK payload not an array
        "4[]",  # CONNECT_ERROR payload neither string nor object
        '5["x"]',  # BINARY_EVENT without attachment count
        '5x-["x"]',  # non-numeric attachment count
        '5-["x"]',  # empty attachment count
        '51["x"]',  # attachment count without dash
        '5999999999-["x"]',  # absurd attachment count
        '21234567890123456["x"]',  # ack id beyond JavaScript's safe integers
        "2" + "[" * 100_000 + "]" * 100_000,  # nesting deep enough to exhaust recursion
    ],
)
def test_malformed_packets_raise_socketio_decode_error(wire: str) -> None:
    with pytest.raises(SocketIODecodeError):
        Decoder().feed(wire)


def test_more_attachments_than_allowed_raises_socketio_decode_error() -> None:
    with pytest.raises(SocketIODecodeError):
        Decoder(max_attachments=2).feed('53-["x"]')


def test_placeholder_pointing_past_the_attachments_raises_socketio_decode_error() -> None:
    decoder = Decoder()
    decoder.feed('51-["x",{"_placeholder":true,"num":1}]')
    with pytest.raises(SocketIODecodeError):
        decoder.feed(b"only one")


def test_bytes_without_a_pending_binary_packet_raise_socketio_decode_error() -> None:
    with pytest.raises(SocketIODecodeError):
        Decoder().feed(b"\x00")


def test_text_while_attachments_are_due_raises_socketio_decode_error() -> None:
    decoder = Decoder()
    decoder.feed('51-["x",{"_placeholder":true,"num":0}]')
    with pytest.raises(SocketIODecodeError):
        decoder.feed('2["y"]')


def test_non_string_messages_raise_socketio_decode_error() -> None:
    with pytest.raises(SocketIODecodeError):
        Decoder().feed(3)  # type: ignore[arg-type]


def test_namespace_query_is_kept_for_the_session_to_split() -> None:
    assert Decoder().feed("0/admin?token=1,") == SIOPacket(T.CONNECT, "/admin?token=1")


def test_numeric_event_names_are_accepted() -> None:
    assert Decoder().feed("2[1,2]") == SIOPacket(T.EVENT, "/", [1, 2])
