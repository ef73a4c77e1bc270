"""Hypothesis on the protocol decoders: whatever a peer sends is a decoded value or one of our
own `ProtocolError`s — never another exception — and what we encode decodes back the same.

Each property runs in well under a second or two; the alphabets are skewed towards the
characters that matter to each grammar (digits, separators, brackets) so the generated input
reaches past the first check.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import engineio_v3 as v3
from gateway.protocol import engineio_v4 as v4
from gateway.protocol import jsonp
from gateway.protocol.engineio import Packet, PacketType
from gateway.protocol.errors import ProtocolError
from gateway.protocol.socketio import Decoder, SIOPacket, SIOType, encode
from gateway.protocol.websocket import FrameReader, encode_frame

FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

_any_char = st.characters() | st.characters(categories=["Cs"])
_text = st.text(_any_char, max_size=60)
_eio_text = st.text(st.sampled_from("0123456789:b\x1e\xff€😀aZ=+/") | _any_char, max_size=60)
_eio_bytes = st.binary(max_size=60) | st.lists(
    st.sampled_from([b"\x00", b"\x01", b"\x04", b"\xff", b"1", b"9", b"abc", b"4hi"]),
    max_size=12).map(b"".join)
_peer_input = _eio_text | _eio_bytes


def _decodes_or_protocol_error(decode: Any, data: Any) -> Any:
    try:
        return decode(data)
    except ProtocolError:
        return None


# -- Engine.IO: packets and payloads -----------------------------------------------------------
@FUZZ
@given(_peer_input)
def test_eio3_packet_and_payload_decoders_raise_only_protocol_errors(data: str | bytes) -> None:
    _decodes_or_protocol_error(v3.decode_packet, data)
    _decodes_or_protocol_error(v3.decode_payload, data)


@FUZZ
@given(_peer_input)
def test_eio4_packet_and_payload_decoders_raise_only_protocol_errors(data: str | bytes) -> None:
    _decodes_or_protocol_error(v4.decode_packet, data)
    _decodes_or_protocol_error(v4.decode_payload, data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 20), _eio_text), max_size=5))
def test_eio3_text_payloads_with_any_length_headers_raise_only_protocol_errors(
        records: list[tuple[int, str]]) -> None:
    _decodes_or_protocol_error(v3.decode_payload, "".join(f"{n}:{text}" for n, text in records))


# Text that can travel: websocket text frames and polling bodies are checked UTF-8 first.
_wire_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_text_packets = st.builds(Packet, st.sampled_from(list(PacketType)), _wire_text)
_binary_packets = st.builds(Packet, st.just(PacketType.MESSAGE), st.binary(max_size=30))


@FUZZ
@given(st.lists(_text_packets | _binary_packets, min_size=1, max_size=6), st.booleans())
def test_eio3_payloads_decode_to_the_packets_encoded(packets: list[Packet],
                                                     binary_ok: bool) -> None:
    assert v3.decode_payload(v3.encode_payload(packets, binary_ok=binary_ok)) == packets


@FUZZ
@given(st.lists(_text_packets.filter(lambda p: "\x1e" not in p.data) | _binary_packets,
                min_size=1, max_size=6))
def test_eio4_payloads_decode_to_the_packets_encoded(packets: list[Packet]) -> None:
    assert v4.decode_payload(v4.encode_payload(packets)) == packets


@FUZZ
@given(_text_packets | _binary_packets)
def test_single_packets_decode_to_what_was_encoded_in_both_versions(packet: Packet) -> None:
    for codec in (v3, v4):
        assert codec.decode_packet(codec.encode_packet(packet)) == packet
        assert codec.decode_packet(codec.encode_packet(packet, binary_ok=False)) == packet


# -- Socket.IO -----------------------------------------------------------------------------------
_sio_text = st.text(
    st.sampled_from('0123456789-/,[]{}":_placeholdertruenumfals\\u.eE') | _any_char, max_size=50)


@FUZZ
@given(st.lists(_sio_text | st.binary(max_size=8), min_size=1, max_size=6))
def test_socketio_decoder_raises_only_protocol_errors(messages: list[str | bytes]) -> None:
    decoder = Decoder()
    for message in messages:
        try:
            decoder.feed(message)
        except ProtocolError:
            decoder = Decoder()  # the connection is closed; the next message is a new peer's


@FUZZ
@given(st.integers(1, 1500), st.sampled_from(["2", "50-", "51-", "3", "61-"]),
       st.sampled_from(["[%s]", '{"k":%s}']))
def test_socketio_decoder_refuses_deep_nesting_as_a_protocol_error(depth: int, head: str,
                                                                     shape: str) -> None:
    """Found by this module: binary packets nested ~500 deep raised a bare RecursionError."""
    data = "1"
    for _ in range(depth):
        data = shape % data
    decoder = Decoder()
    try:
        if decoder.feed(f'{head}1["x",{data}]') is None:
            decoder.feed(b"attachment")
    except ProtocolError:
        pass


_json_scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                 | st.floats(allow_nan=False, allow_infinity=False) | _wire_text)
_json_values = st.recursive(
    _json_scalars | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(_wire_text.filter(lambda key: key != "_placeholder"), children, max_size=3),
    max_leaves=10,
)
_event_names = _wire_text.filter(
    lambda name: name not in {"connect", "connect_error", "disconnect", "disconnecting",
                              "newListener", "removeListener"})


@FUZZ
@given(_event_names, st.lists(_json_values, max_size=3),
       st.sampled_from(["/", "/admin", "/chat-room"]),
       st.none() | st.integers(0, 10**15 - 1))
def test_socketio_events_decode_to_what_was_encoded(name: str, args: list[Any], namespace: str,
                                                    packet_id: int | None) -> None:
    packet = SIOPacket(SIOType.EVENT, namespace, [name, *args], packet_id)
    text, attachments = encode(packet)
    decoder = Decoder(max_attachments=100)
    decoded = decoder.feed(text)
    for attachment in attachments:
        assert decoded is None
        decoded = decoder.feed(attachment)
    assert decoded == packet


# -- JSONP and websocket frames -------------------------------------------------------------------
@FUZZ
@given(st.text(st.sampled_from("d=%&+\\n0123456789:") | _any_char, max_size=40)
       | st.binary(max_size=40))
def test_jsonp_form_decoder_raises_only_protocol_errors(body: str | bytes) -> None:
    _decodes_or_protocol_error(jsonp.decode_form, body)


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_websocket_frame_reader_raises_only_protocol_errors(chunks: list[bytes]) -> None:
    reader = FrameReader(max_message=1000)
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except ProtocolError:
        pass


def _client_frame(opcode: int, payload: bytes, mask: bytes, fin: bool = True) -> bytes:
    """A masked client frame: the server's own encoding with the mask bit and key put in."""
    server = encode_frame(opcode, payload)
    head = bytes([server[0] & (0xFF if fin else 0x7F)])
    length_bytes = server[1:len(server) - len(payload)]
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + bytes([length_bytes[0] | 0x80]) + length_bytes[1:] + mask + masked


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(1, 50))
def test_websocket_messages_survive_any_split_of_their_bytes(payloads: list[bytes], mask: bytes,
                                                            step: int) -> None:
    wire = b"".join(_client_frame(0x2, payload, mask) for payload in payloads)
    reader = FrameReader()
    frames = []
    for start in range(0, len(wire), step):
        frames += reader.feed(wire[start:start + step])
    assert [frame.payload for frame in frames] == payloads
