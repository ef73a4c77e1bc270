"""Engine.IO revision 4 codec: exact wire strings both ways, framing, malformed input."""

from __future__ import annotations

import pytest

from gateway.protocol import engineio_v3, engineio_v4 as v4
from gateway.protocol.engineio import Packet, PacketType
from gateway.protocol.errors import LocalProtocolError, PacketDecodeError, PayloadDecodeError

MSG = PacketType.MESSAGE


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Packet(PacketType.CLOSE), "1"),
        (Packet(PacketType.PING), "2"),
        (Packet(PacketType.PONG), "3"),
        (Packet(PacketType.PING, "probe"), "2probe"),
        (Packet(PacketType.PONG, "probe"), "3probe"),
        (Packet(MSG, '2["hey","Jude"]'), '42["hey","Jude"]'),
        (Packet(PacketType.UPGRADE), "5"),
        (Packet(PacketType.NOOP), "6"),
    ],
)
def test_text_packets_encode_and_decode_to_the_exact_wire_string(packet: Packet, wire: str) -> None:
    assert v4.encode_packet(packet) == wire
    assert v4.decode_packet(wire) == packet


def test_binary_message_is_sent_as_is_over_websocket() -> None:
    assert v4.encode_packet(Packet(MSG, b"\x01\x02")) == b"\x01\x02"
    assert v4.decode_packet(b"\x01\x02") == Packet(MSG, b"\x01\x02")


def test_binary_message_is_b_base64_without_type_in_text() -> None:
    assert v4.encode_packet(Packet(MSG, b"\x01\x02\x03\x04"), binary_ok=False) == "bAQIDBA=="
    assert v4.decode_packet("bAQIDBA==") == Packet(MSG, b"\x01\x02\x03\x04")


def test_payload_joins_packets_with_record_separator_and_base64_binary() -> None:
    packets = [Packet(MSG, "hello"), Packet(PacketType.PING), Packet(MSG, b"\x01\x02\x03\x04")]
    wire = "4hello\x1e2\x1ebAQIDBA=="
    assert v4.encode_payload(packets) == wire
    assert v4.encode_payload(packets, binary_ok=True) == wire
    assert v4.decode_payload(wire) == packets


def test_payload_keeps_non_ascii_text_untouched() -> None:
    packets = [Packet(MSG, "€😀"), Packet(MSG, "x")]
    assert v4.encode_payload(packets) == "4€😀\x1e4x"
    assert v4.decode_payload("4€😀\x1e4x") == packets


def test_payload_accepts_pre_encoded_text_packets() -> None:
    assert v4.encode_payload(['42["e"]', Packet(PacketType.NOOP)]) == '42["e"]\x1e6'


def test_open_packet_has_node_field_order_with_max_payload() -> None:
    packet = v4.open_packet(
        "lv_VI97HAXpY6yYWAAAC",
        upgrades=["websocket"],
        ping_interval_ms=25000,
        ping_timeout_ms=5000,
        max_payload=1000000,
    )
    assert v4.encode_packet(packet) == (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}'
    )


@pytest.mark.parametrize("wire", ["", "7", "x", "b!!!", "4a\x1e"])
def test_malformed_input_raises_packet_decode_error(wire: str) -> None:
    with pytest.raises(PacketDecodeError):
        v4.decode_payload(wire)


def test_non_string_frames_raise_packet_decode_error() -> None:
    with pytest.raises(PacketDecodeError):
        v4.decode_packet(None)  # type: ignore[arg-type]


def test_binary_polling_bodies_are_refused_in_v4() -> None:
    with pytest.raises(PayloadDecodeError):
        v4.decode_payload(b"\x00\x01\xff4")


def test_only_message_packets_may_carry_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        v4.encode_packet(Packet(PacketType.PING, b"x"))


def test_both_codecs_have_identical_signatures() -> None:
    import inspect

    for name in ("encode_packet", "decode_packet", "encode_payload", "decode_payload", "open_packet"):
        assert inspect.signature(getattr(v4, name)) == inspect.signature(
            getattr(engineio_v3, name)
        ), name
