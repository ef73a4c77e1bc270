"""RFC 6455 framing: exact bytes both ways, and every malformed client frame refused."""

import os
import struct

import pytest

from gateway.protocol import websocket as ws


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None,
                 rsv: int = 0) -> bytes:
    mask = os.urandom(4) if mask is None else mask
    head = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", head, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", head, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", head, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def test_accept_key_matches_the_rfc_example():
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_key_must_be_16_bytes_of_base64():
    assert ws.valid_client_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not ws.valid_client_key("short")
    assert not ws.valid_client_key(None)
    assert not ws.valid_client_key("!!!!")


@pytest.mark.parametrize("length, header", [(5, b"\x81\x05"), (200, b"\x81\x7e\x00\xc8"),
                                            (70000, b"\x81\x7f" + struct.pack("!Q", 70000))])
def test_server_frames_are_unmasked_with_the_shortest_length(length, header):
    frame = ws.encode_frame(ws.TEXT, b"x" * length)
    assert frame == header + b"x" * length


def test_close_frame_carries_code_and_reason():
    assert ws.close_frame(1000, "bye") == b"\x88\x05\x03\xe8bye"


def test_reader_unmasks_text_in_any_split():
    data = client_frame(ws.TEXT, "42[\"é\"]".encode()) + client_frame(ws.PING, b"hi")
    for cut in range(len(data)):
        reader = ws.FrameReader()
        frames = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert frames == [ws.Frame(ws.TEXT, "42[\"é\"]".encode()), ws.Frame(ws.PING, b"hi")]


def test_reader_handles_16_and_64_bit_lengths():
    reader = ws.FrameReader(max_message=200_000)
    assert reader.feed(client_frame(ws.BINARY, b"a" * 300)) == [ws.Frame(ws.BINARY, b"a" * 300)]
    assert reader.feed(client_frame(ws.BINARY, b"b" * 70000)) == [ws.Frame(ws.BINARY, b"b" * 70000)]


def test_reader_joins_fragments_with_control_frames_between():
    reader = ws.FrameReader()
    frames = reader.feed(client_frame(ws.TEXT, b"he", fin=False)
                         + client_frame(ws.PING, b"")
                         + client_frame(0, b"llo"))
    assert frames == [ws.Frame(ws.PING, b""), ws.Frame(ws.TEXT, b"hello")]


@pytest.mark.parametrize("data, code", [
    (client_frame(ws.TEXT, b"x", rsv=0x40), ws.PROTOCOL_ERROR),
    (b"\x81\x01x", ws.PROTOCOL_ERROR),  # unmasked
    (client_frame(0x3, b"x"), ws.PROTOCOL_ERROR),  # reserved opcode
    (client_frame(0, b"x"), ws.PROTOCOL_ERROR),  # continuation of nothing
    (client_frame(ws.PING, b"x", fin=False), ws.PROTOCOL_ERROR),
    (client_frame(ws.PING, b"x" * 126), ws.PROTOCOL_ERROR),
    (client_frame(ws.TEXT, b"\xff\xfe"), ws.INVALID_DATA),
    (client_frame(ws.TEXT, b"a", fin=False) + client_frame(ws.TEXT, b"b"), ws.PROTOCOL_ERROR),
])
def test_reader_refuses_malformed_frames(data, code):
    with pytest.raises(ws.WebSocketError) as error:
        ws.FrameReader().feed(data)
    assert error.value.code == code


def test_reader_refuses_oversized_messages_before_buffering_them():
    reader = ws.FrameReader(max_message=1000)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 10**9)
    with pytest.raises(ws.WebSocketError) as error:
        reader.feed(header)
    assert error.value.code == ws.MESSAGE_TOO_BIG
    fragments = ws.FrameReader(max_message=1000)
    with pytest.raises(ws.WebSocketError):
        fragments.feed(client_frame(ws.TEXT, b"a" * 600, fin=False) + client_frame(0, b"b" * 600))
