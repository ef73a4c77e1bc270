"""Engine.IO revision 3 codec: exact wire strings both ways, framing, malformed input."""

from __future__ import annotations

import pytest

from gateway.protocol import engineio_v3 as v3
from gateway.protocol.engineio import Packet, PacketType
from gateway.protocol.errors import (
    LocalProtocolError,
    PacketDecodeError,
    PayloadDecodeError,
    ProtocolError,
    RemoteProtocolError,
)

MSG = PacketType.MESSAGE


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Packet(PacketType.OPEN, '{"sid":"x"}'), '0{"sid":"x"}'),
        (Packet(PacketType.CLOSE), "1"),
        (Packet(PacketType.PING, "probe"), "2probe"),
        (Packet(PacketType.PONG, "probe"), "3probe"),
        (Packet(MSG, "hello"), "4hello"),
        (Packet(PacketType.UPGRADE), "5"),
        (Packet(PacketType.NOOP), "6"),
        (Packet(MSG, "€😀"), "4€😀"),
    ],
)
def test_text_packets_encode_and_decode_to_the_exact_wire_string(packet: Packet, wire: str) -> None:
    assert v3.encode_packet(packet) == wire
    assert v3.decode_packet(wire) == packet


def test_binary_packet_is_type_byte_then_data_when_binary_is_supported() -> None:
    packet = Packet(MSG, b"\x00\x01\x02")
    assert v3.encode_packet(packet, binary_ok=True) == b"\x04\x00\x01\x02"
    assert v3.decode_packet(b"\x04\x00\x01\x02") == packet


def test_binary_packet_is_b_type_base64_without_binary_support() -> None:
    packet = Packet(MSG, b"\x01\x02\x03\x04")
    assert v3.encode_packet(packet, binary_ok=False) == "b4AQIDBA=="
    assert v3.decode_packet("b4AQIDBA==") == packet


def test_text_payload_counts_characters_not_bytes() -> None:
    packets = [Packet(MSG, "hello"), Packet(MSG, "€")]
    assert v3.encode_payload(packets) == "6:4hello2:4€"
    assert v3.decode_payload("6:4hello2:4€") == packets


def test_text_payload_counts_astral_characters_as_two_utf16_code_units() -> None:
    packets = [Packet(MSG, "😀"), Packet(MSG, "a😀b"), Packet(MSG, "é")]
    wire = "3:4😀5:4a😀b2:4é"
    assert v3.encode_payload(packets) == wire
    assert v3.decode_payload(wire) == packets


def test_text_payload_matches_the_spec_open_packet_example() -> None:
    open_packet = (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":5000}'
    )
    assert v3.encode_payload([Packet(PacketType.OPEN, open_packet[1:]), Packet(MSG, "0")]) == (
        "96:" + open_packet + "2:40"
    )


def test_text_payload_base64_encodes_binary_packets_by_default() -> None:
    packets = [Packet(MSG, "€"), Packet(MSG, b"\x01\x02\x03\x04")]
    assert v3.encode_payload(packets) == "2:4€10:b4AQIDBA=="
    assert v3.decode_payload("2:4€10:b4AQIDBA==") == packets


def test_binary_payload_matches_the_spec_example() -> None:
    packets = [Packet(MSG, "€"), Packet(MSG, b"\x01\x02\x03\x04")]
    wire = bytes.fromhex("00 04 ff 34 e2 82 ac 01 05 ff 04 01 02 03 04")
    assert v3.encode_payload(packets, binary_ok=True) == wire
    assert v3.decode_payload(wire) == packets


def test_binary_payload_writes_multi_digit_lengths_as_one_byte_per_digit() -> None:
    data = bytes(range(256)) * 5  # 1280 bytes, + 1 type byte
    wire = v3.encode_payload([Packet(MSG, data)], binary_ok=True)
    assert isinstance(wire, bytes)
    assert wire[:6] == bytes([1, 1, 2, 8, 1, 0xFF])
    assert v3.decode_payload(wire) == [Packet(MSG, data)]


def test_text_only_payload_stays_text_even_when_binary_is_supported() -> None:
    assert v3.encode_payload([Packet(MSG, "hi")], binary_ok=True) == "3:4hi"


def test_empty_payload_encodes_as_zero_length() -> None:
    assert v3.encode_payload([]) == "0:"
    assert v3.decode_payload("0:") == []


def test_payload_accepts_pre_encoded_text_packets() -> None:
    assert v3.encode_payload(['42["e"]', Packet(PacketType.NOOP)]) == '7:42["e"]1:6'


@pytest.mark.parametrize(
    "wire",
    [
        "",  # empty packet
        "7",  # unknown type
        "x",  # not a type
        "b",  # base64 without type
        "b9AAAA",  # base64 with unknown type
        "b4!!!",  # not base64
        b"",  # empty binary packet
        b"\x09abc",  # unknown binary type
    ],
)
def test_malformed_packets_raise_packet_decode_error(wire: str | bytes) -> None:
    with pytest.raises(PacketDecodeError):
        v3.decode_packet(wire)


def test_non_string_frames_raise_packet_decode_error() -> None:
    with pytest.raises(PacketDecodeError):
        v3.decode_packet(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "wire",
    [
        "",  # empty payload
        "4hello",  # no length header
        ":4hello",  # empty length
        "x:4hello",  # non-numeric length
        "-1:4",  # negative length
        "10:4hello",  # truncated
        "6:4hello2",  # trailing garbage without colon
        "1:😀",  # length splits a surrogate pair
        "99999999999999999999:4",  # absurd length header
        "٣:4ab",  # non-ASCII digits
    ],
)
def test_malformed_text_payloads_raise_payload_decode_error(wire: str) -> None:
    with pytest.raises(PayloadDecodeError):
        v3.decode_payload(wire)


def test_bad_packet_inside_a_payload_raises_packet_decode_error() -> None:
    with pytest.raises(PacketDecodeError):
        v3.decode_payload("2:9x")


@pytest.mark.parametrize(
    "wire",
    [
        b"\x02\x01\xff4",  # bad marker
        b"\x00\x01\x02",  # no separator
        b"\x00\xff4",  # no length digits
        b"\x00\x0a\xff4",  # "digit" 10
        b"\x00\x05\xff4hi",  # truncated
        b"\x00\x02\xff4\xff",  # string packet not UTF-8
        b"\x00" + bytes([1] * 20) + b"\xff",  # absurd length header
    ],
)
def test_malformed_binary_payloads_raise_payload_decode_error(wire: bytes) -> None:
    with pytest.raises(PayloadDecodeError):
        v3.decode_payload(wire)


def test_payload_of_the_wrong_type_raises_payload_decode_error() -> None:
    with pytest.raises(PayloadDecodeError):
        v3.decode_payload(None)  # type: ignore[arg-type]


def test_decode_errors_are_remote_faults_and_encoding_errors_are_local() -> None:
    assert issubclass(PayloadDecodeError, RemoteProtocolError)
    assert issubclass(PacketDecodeError, RemoteProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    with pytest.raises(LocalProtocolError):
        v3.encode_payload([Packet(MSG, "\ud800"), Packet(MSG, b"x")], binary_ok=True)


def test_open_packet_has_node_field_order_without_max_payload() -> None:
    packet = v3.open_packet(
        "abc", upgrades=[], ping_interval_ms=25000, ping_timeout_ms=60000, max_payload=10
    )
    assert v3.encode_packet(packet) == (
        '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":60000}'
    )
