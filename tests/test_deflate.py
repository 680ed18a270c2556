"""Unit tests of permessage-deflate without I/O (ws4redis_gevent/deflate.py), and of the frame
parser with compression negotiated."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from test_frames import client_frame

from ws4redis_gevent.deflate import (
    DeflateParams,
    Inflater,
    compress,
    deflate_frame,
    negotiate,
    parse_extensions,
)
from ws4redis_gevent.exceptions import ProtocolError
from ws4redis_gevent.frames import CloseCode, FrameParser, Message, Opcode, encode_frame

JSON = b'{"event": "price", "items": [' + b", ".join(b'{"id": %d, "v": 1.5}' % i for i in range(40))
JSON += b"]}"


def inflate(data: bytes, window_bits: int = 15) -> bytes:
    """What a client does with a compressed message (RFC 7692 section 7.2.2), from scratch."""
    return zlib.decompressobj(-window_bits).decompress(data + b"\x00\x00\xff\xff")


def client_deflate(payload: bytes, compressor: zlib._Compress) -> bytes:
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


# -- negotiation -------------------------------------------------------------------------------


def test_parse_extensions() -> None:
    header = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo'
    assert parse_extensions(header) == [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-foo", []),
    ]


def test_chromium_offer_is_accepted_with_the_client_window_bounded() -> None:
    """Chromium sends ``permessage-deflate; client_max_window_bits``."""
    params = negotiate("permessage-deflate; client_max_window_bits", max_window_bits=12)
    assert params == DeflateParams(
        15,
        12,
        False,
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
    )


def test_websockets_library_offer_is_accepted() -> None:
    """The websockets library's client sends the same offer as Chromium by default."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    factory = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    header = "; ".join(
        [factory.name] + [k if v is None else f"{k}={v}" for k, v in factory.get_request_params()]
    )
    params = negotiate(header, max_window_bits=12)
    assert params is not None and params.client_max_window_bits == 12
    # And the library accepts the answer.
    response = parse_extensions(params.response)[0][1]
    factory.process_response_params(response, [])


def test_client_without_window_bits_must_drop_its_context_when_memory_is_bounded() -> None:
    """A client that did not offer client_max_window_bits uses a 32 KiB window: it is told not
    to take its context over, so that no inflate state outlives a message."""
    params = negotiate("permessage-deflate", max_window_bits=12)
    assert params is not None
    assert params.client_no_context_takeover and params.client_max_window_bits == 15
    assert "client_no_context_takeover" in params.response
    unbounded = negotiate("permessage-deflate", max_window_bits=15)
    assert unbounded is not None and not unbounded.client_no_context_takeover


def test_client_no_context_takeover_is_echoed() -> None:
    params = negotiate("permessage-deflate; client_no_context_takeover", 15)
    assert params is not None and params.client_no_context_takeover
    assert params.response.endswith("client_no_context_takeover")


def test_server_max_window_bits_is_honoured() -> None:
    params = negotiate("permessage-deflate; server_max_window_bits=9", 15)
    assert params is not None and params.server_max_window_bits == 9
    assert "server_max_window_bits=9" in params.response


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; unknown_parameter",
        "x-webkit-deflate-frame",
        "",
    ],
)
def test_unacceptable_offers_are_declined(offer: str) -> None:
    assert negotiate(offer, 12) is None


def test_the_first_acceptable_offer_wins() -> None:
    offer = (
        "permessage-deflate; foo, permessage-deflate; server_max_window_bits=10, permessage-deflate"
    )
    params = negotiate(offer, 15)
    assert params is not None and params.server_max_window_bits == 10


# -- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(8, 16))
def test_each_message_decompresses_on_its_own(bits: int) -> None:
    """server_no_context_takeover: every compressed message decodes with a fresh context of
    the negotiated window, whatever was compressed before it."""
    messages = [JSON, JSON, os.urandom(3000), JSON[::-1] * 20, b""]
    for payload in messages:
        assert inflate(compress(payload, bits), bits) == payload


def test_deflate_frame_sets_rsv1_and_keeps_the_opcode() -> None:
    frame = encode_frame(Opcode.TEXT, JSON)
    deflated = deflate_frame(frame)
    assert deflated[0] == 0x80 | 0x40 | Opcode.TEXT
    length = deflated[1] & 0x7F
    offset = 2 if length < 126 else 4
    if length == 126:
        (length,) = struct.unpack("!H", deflated[2:4])
    assert len(deflated) == offset + length < len(frame)
    assert inflate(deflated[offset:]) == JSON


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(Opcode.PING, b"a" * 100),
        encode_frame(Opcode.TEXT, b"a" * 100, fin=False),
        encode_frame(Opcode.BINARY, os.urandom(100)),  # incompressible: sent as it is
        encode_frame(Opcode.TEXT, b"hi"),
    ],
    ids=["control", "fragment", "incompressible", "tiny"],
)
def test_deflate_frame_leaves_what_would_not_shrink_or_may_not_be_compressed(
    frame: bytes,
) -> None:
    assert deflate_frame(frame) == frame


# -- decompression -----------------------------------------------------------------------------


def compressed_frames(messages: list[bytes], takeover: bool, bits: int = 15) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    data = b""
    for payload in messages:
        if not takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
        data += client_frame(Opcode.BINARY, client_deflate(payload, compressor), rsv=4)
    return data


@pytest.mark.parametrize("takeover", [True, False], ids=["context takeover", "no takeover"])
def test_parser_decompresses_with_or_without_context_takeover(takeover: bool) -> None:
    messages = [JSON, JSON, JSON[:100]]
    parser = FrameParser(1 << 20, Inflater(15, no_context_takeover=not takeover))
    assert parser.feed(compressed_frames(messages, takeover)) == [Message(m) for m in messages]
    assert parser.inflater is not None
    assert parser.inflater.holds_context == takeover


def test_parser_decompresses_fragmented_text_and_mixes_in_plain_messages() -> None:
    compressed = client_deflate("héllo wörld ".encode() * 50, zlib.compressobj(6, 8, -15))
    half = len(compressed) // 2
    data = (
        client_frame(Opcode.TEXT, compressed[:half], fin=False, rsv=4)
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.CONTINUATION, compressed[half:])
        + client_frame(Opcode.TEXT, b"plain")
    )
    events = FrameParser(1 << 20, Inflater()).feed(data)
    assert events[1:] == [Message("héllo wörld " * 50), Message("plain")]


def test_decompression_bomb_closes_1009_within_the_limit() -> None:
    """16 MiB of zeros compress to 16 KiB: decompressing stops at the limit, with 1009."""
    bomb = client_deflate(bytes(16 << 20), zlib.compressobj(9, 8, -15))
    assert len(bomb) < 20_000
    parser = FrameParser(1 << 20, Inflater())
    with pytest.raises(ProtocolError) as info:
        parser.feed(client_frame(Opcode.BINARY, bomb, rsv=4))
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_message_at_the_limit_decompressed_passes() -> None:
    payload = bytes(1000)
    frame = client_frame(Opcode.BINARY, client_deflate(payload, zlib.compressobj(6, 8, -15)), rsv=4)
    assert FrameParser(1000, Inflater()).feed(frame) == [Message(payload)]
    with pytest.raises(ProtocolError) as info:
        FrameParser(999, Inflater()).feed(frame)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_invalid_utf8_in_compressed_text_is_1007() -> None:
    frame = client_frame(Opcode.TEXT, client_deflate(b"ok\xff", zlib.compressobj(6, 8, -15)), rsv=4)
    with pytest.raises(ProtocolError) as info:
        FrameParser(1 << 20, Inflater()).feed(frame)
    assert info.value.code == CloseCode.INVALID_DATA


def test_corrupt_compressed_data_is_a_protocol_error() -> None:
    frame = client_frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv=4)
    with pytest.raises(ProtocolError) as info:
        FrameParser(1 << 20, Inflater()).feed(frame)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(Opcode.PING, b"", rsv=4),
        client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.CONTINUATION, b"", rsv=4),
    ],
    ids=["control frame", "continuation frame"],
)
def test_rsv1_only_on_the_first_frame_of_a_data_message(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        FrameParser(1 << 20, Inflater()).feed(frame)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_rsv1_without_compression_negotiated_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        FrameParser(1 << 20).feed(client_frame(Opcode.TEXT, b"", rsv=4))
    assert info.value.code == CloseCode.PROTOCOL_ERROR
