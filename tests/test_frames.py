"""Unit tests of RFC 6455 framing without I/O (ws4redis_gevent/frames.py)."""

from __future__ import annotations

import os
import struct

import pytest

from ws4redis_gevent.exceptions import ProtocolError
from ws4redis_gevent.frames import (
    MAX_FRAGMENTS,
    Close,
    CloseCode,
    FrameParser,
    Message,
    Opcode,
    Ping,
    Pong,
    encode_close,
    encode_frame,
    encode_message,
    is_valid_close_code,
    unmask,
)


def client_frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    claimed_length: int | None = None,
) -> bytes:
    """A frame as a client sends it: masked with a random key (RFC 6455 section 5.3)."""
    head = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload) if claimed_length is None else claimed_length
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", head, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", head, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", head, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + unmask(payload, key)


def parse(data: bytes, max_message_size: int = 1 << 20) -> list[object]:
    """Every event a fresh parser yields for ``data``."""
    return list(FrameParser(max_message_size).feed(data))


def protocol_error(data: bytes, max_message_size: int = 1 << 20) -> ProtocolError:
    """The ProtocolError a fresh parser raises for ``data``."""
    parser = FrameParser(max_message_size)
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(data))
    return info.value


# encode_frame / encode_message


@pytest.mark.parametrize(
    ("length", "header_length", "length_byte"),
    [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127)],
)
def test_encode_frame_length_encoding_at_boundaries(
    length: int, header_length: int, length_byte: int
) -> None:
    """Lengths up to 125 fit the first byte, up to 65535 take 16 bits, beyond take 64 bits."""
    payload = b"x" * length
    frame = encode_frame(Opcode.BINARY, payload)
    assert len(frame) == header_length + length
    assert frame[0] == 0x80 | Opcode.BINARY
    assert frame[1] == length_byte  # server frames are never masked
    if header_length == 4:
        assert struct.unpack("!H", frame[2:4])[0] == length
    elif header_length == 10:
        assert struct.unpack("!Q", frame[2:10])[0] == length
    assert frame[header_length:] == payload


def test_encode_frame_without_fin_clears_the_fin_bit() -> None:
    """A non-final fragment has FIN cleared and keeps its opcode."""
    assert encode_frame(Opcode.TEXT, b"ab", fin=False)[:2] == bytes([0x01, 2])


def test_encode_message_sends_str_as_text() -> None:
    """A str is encoded to UTF-8 and framed as text."""
    frame = encode_message("héllo")
    assert frame == bytes([0x81, 6]) + "héllo".encode()


def test_encode_message_sends_utf8_bytes_as_text() -> None:
    """Bytes that decode as UTF-8 are framed as text."""
    assert encode_message("€".encode())[0] == 0x80 | Opcode.TEXT


def test_encode_message_sends_other_bytes_as_binary() -> None:
    """Bytes that are not UTF-8 are framed as binary, unchanged."""
    payload = b"\xff\x00\xfe"
    assert encode_message(payload) == bytes([0x80 | Opcode.BINARY, 3]) + payload


def test_encode_close_frames_the_serialized_payload() -> None:
    """encode_close frames code and reason as a close frame."""
    assert encode_close(Close(1001, "bye")) == bytes([0x88, 5]) + b"\x03\xe9bye"


# Close


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011])
def test_close_parse_accepts_valid_codes(code: int) -> None:
    """Codes defined by RFC 6455 for the wire parse with their reason."""
    assert Close.parse(struct.pack("!H", code) + b"reason") == Close(code, "reason")


@pytest.mark.parametrize("code", [3000, 3999, 4000, 4999])
def test_close_parse_accepts_application_codes(code: int) -> None:
    """3000-4999 belong to libraries and applications (section 7.4.2)."""
    assert Close.parse(struct.pack("!H", code)) == Close(code, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
def test_close_parse_rejects_invalid_codes(code: int) -> None:
    """Reserved, local-only and out-of-range codes are a protocol error (1002)."""
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        Close.parse(struct.pack("!H", code))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_close_parse_empty_payload_means_no_status() -> None:
    """An empty close payload is reported as 1005 with no reason."""
    assert Close.parse(b"") == Close(CloseCode.NO_STATUS, "")


def test_close_parse_rejects_one_byte_payload() -> None:
    """A one-byte payload cannot hold a code: protocol error."""
    with pytest.raises(ProtocolError) as info:
        Close.parse(b"\x03")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_close_parse_rejects_invalid_utf8_reason_with_1007() -> None:
    """A reason that is not UTF-8 is invalid data (1007)."""
    with pytest.raises(ProtocolError) as info:
        Close.parse(b"\x03\xe8\xff\xfe")
    assert info.value.code == CloseCode.INVALID_DATA


def test_close_serialize_roundtrips_through_parse() -> None:
    """serialize() gives a payload that parse() turns back into the same Close."""
    close = Close(4001, "gone fishing ✓")
    assert close.serialize() == b"\x0f\xa1" + "gone fishing ✓".encode()
    assert Close.parse(close.serialize()) == close


def test_close_serialize_keeps_a_reason_that_fits() -> None:
    """A 123-byte reason fills the 125-byte control payload exactly and is kept whole."""
    payload = Close(1000, "a" * 123).serialize()
    assert len(payload) == 125
    assert payload[2:] == b"a" * 123


def test_close_serialize_truncates_ascii_reason_to_125_bytes() -> None:
    """A long reason is cut so the whole payload fits a control frame."""
    payload = Close(1000, "a" * 300).serialize()
    assert len(payload) == 125
    assert Close.parse(payload) == Close(1000, "a" * 123)


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_close_serialize_truncation_never_splits_a_character(char: str) -> None:
    """Cutting a multibyte reason drops the incomplete character, leaving valid UTF-8."""
    reason = "a" + char * 100  # 'a' shifts the cut into the middle of a character
    payload = Close(1001, reason).serialize()
    assert len(payload) <= 125
    width = len(char.encode())
    assert len(payload) > 125 - width  # nothing more than the split character was dropped
    parsed = Close.parse(payload)
    assert parsed.code == 1001
    assert reason.startswith(parsed.reason)


def test_close_str_names_the_code() -> None:
    """str(Close) reads well: code, name, reason."""
    assert str(Close(1000, "done")) == "1000 (NORMAL) done"
    assert str(Close(4000)) == "4000 (application)"


# unmask


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 1000, 65537])
def test_unmask_roundtrip(length: int) -> None:
    """Masking twice with the same key gives back the payload; masking changes it."""
    payload = os.urandom(length)
    key = b"\x12\x34\x56\x78"
    masked = unmask(payload, key)
    assert len(masked) == length
    assert unmask(masked, key) == payload


def test_unmask_matches_rfc_definition() -> None:
    """Byte i is XORed with key byte i mod 4 (section 5.3)."""
    payload = bytes(range(11))
    key = b"\x01\x02\x04\x08"
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert unmask(payload, key) == expected


# FrameParser: valid input


def test_parser_masked_text_message() -> None:
    """A masked text frame yields a str message."""
    assert parse(client_frame(Opcode.TEXT, "hé".encode())) == [Message("hé")]


def test_parser_masked_binary_message() -> None:
    """A masked binary frame yields a bytes message, even if it is not UTF-8."""
    events = parse(client_frame(Opcode.BINARY, b"\x00\xff"))
    assert events == [Message(b"\x00\xff")]
    assert not events[0].is_text  # type: ignore[attr-defined]


def test_parser_empty_text_message() -> None:
    """An empty text frame is an empty message."""
    assert parse(client_frame(Opcode.TEXT, b"")) == [Message("")]


@pytest.mark.parametrize("length", [125, 126, 65535, 65536])
def test_parser_extended_lengths(length: int) -> None:
    """16-bit and 64-bit extended payload lengths are read correctly."""
    payload = os.urandom(length)
    assert parse(client_frame(Opcode.BINARY, payload)) == [Message(payload)]


def test_parser_fragmented_text_reassembled() -> None:
    """Text fragments (TEXT, CONTINUATION..., final) become one message."""
    data = (
        client_frame(Opcode.TEXT, b"Hel", fin=False)
        + client_frame(Opcode.CONTINUATION, b"lo, ", fin=False)
        + client_frame(Opcode.CONTINUATION, b"world")
    )
    assert parse(data) == [Message("Hello, world")]


def test_parser_fragmented_binary_reassembled() -> None:
    """Binary fragments become one bytes message."""
    data = client_frame(Opcode.BINARY, b"\x00\x01", fin=False) + client_frame(
        Opcode.CONTINUATION, b"\xff"
    )
    assert parse(data) == [Message(b"\x00\x01\xff")]


def test_parser_parser_is_reusable_after_a_fragmented_message() -> None:
    """After a fragmented message completes, a new message starts cleanly."""
    data = (
        client_frame(Opcode.TEXT, b"a", fin=False)
        + client_frame(Opcode.CONTINUATION, b"b")
        + client_frame(Opcode.BINARY, b"c")
    )
    assert parse(data) == [Message("ab"), Message(b"c")]


def test_parser_control_frames_interleaved_in_fragmented_message() -> None:
    """Ping, pong and close may arrive between fragments and are yielded at once."""
    data = (
        client_frame(Opcode.TEXT, b"one ", fin=False)
        + client_frame(Opcode.PING, b"p1")
        + client_frame(Opcode.CONTINUATION, b"two ", fin=False)
        + client_frame(Opcode.PONG, b"p2")
        + client_frame(Opcode.CONTINUATION, b"three")
        + client_frame(Opcode.CLOSE, Close(1000, "bye").serialize())
    )
    assert parse(data) == [
        Ping(b"p1"),
        Pong(b"p2"),
        Message("one two three"),
        Close(1000, "bye"),
    ]


def test_parser_several_frames_in_one_chunk() -> None:
    """Every frame in one chunk is yielded, in order."""
    data = b"".join(client_frame(Opcode.TEXT, f"m{i}".encode()) for i in range(20))
    assert parse(data) == [Message(f"m{i}") for i in range(20)]


def test_parser_byte_by_byte_feeding_yields_the_same_events() -> None:
    """Feeding one byte at a time gives the same events as one chunk."""
    data = (
        client_frame(Opcode.TEXT, "αβ".encode(), fin=False)
        + client_frame(Opcode.PING, b"x")
        + client_frame(Opcode.CONTINUATION, "γ".encode())
        + client_frame(Opcode.BINARY, os.urandom(300))
        + client_frame(Opcode.BINARY, os.urandom(70000))
        + client_frame(Opcode.CLOSE, b"\x03\xe8")
    )
    parser = FrameParser()
    events = []
    for i in range(len(data)):
        events.extend(parser.feed(data[i : i + 1]))
    assert events == parse(data)
    assert len(events) == 5


def test_parser_partial_frame_yields_nothing_until_complete() -> None:
    """A frame split across two chunks is yielded once the second chunk arrives."""
    frame = client_frame(Opcode.TEXT, b"hello")
    parser = FrameParser()
    assert list(parser.feed(frame[:6])) == []
    assert list(parser.feed(frame[6:])) == [Message("hello")]


def test_parser_control_frames() -> None:
    """Ping, pong and close frames become Ping, Pong and Close events."""
    data = (
        client_frame(Opcode.PING, b"ping")
        + client_frame(Opcode.PONG, b"")
        + client_frame(Opcode.CLOSE, b"")
    )
    assert parse(data) == [Ping(b"ping"), Pong(b""), Close(CloseCode.NO_STATUS)]


def test_parser_control_frame_of_125_bytes_accepted() -> None:
    """125 bytes is the largest allowed control payload."""
    assert parse(client_frame(Opcode.PING, b"p" * 125)) == [Ping(b"p" * 125)]


def test_parser_text_codepoint_split_across_fragments_is_valid() -> None:
    """A multibyte character split between fragments is valid UTF-8 once reassembled."""
    euro = "€".encode()  # 3 bytes
    data = (
        client_frame(Opcode.TEXT, b"a" + euro[:1], fin=False)
        + client_frame(Opcode.CONTINUATION, euro[1:2], fin=False)
        + client_frame(Opcode.CONTINUATION, euro[2:] + b"b")
    )
    assert parse(data) == [Message("a€b")]


def test_parser_message_of_exactly_max_size_accepted() -> None:
    """A message of exactly max_message_size bytes, even fragmented, is accepted."""
    data = client_frame(Opcode.BINARY, b"a" * 60, fin=False) + client_frame(
        Opcode.CONTINUATION, b"b" * 40
    )
    assert parse(data, max_message_size=100) == [Message(b"a" * 60 + b"b" * 40)]


# FrameParser: errors


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_parser_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    """RSV1-3 set without a negotiated extension: 1002."""
    error = protocol_error(client_frame(Opcode.TEXT, b"x", rsv=rsv))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_parser_unknown_opcodes_are_a_protocol_error(opcode: int) -> None:
    """Reserved data and control opcodes: 1002."""
    assert protocol_error(client_frame(opcode, b"x")).code == CloseCode.PROTOCOL_ERROR


def test_parser_unmasked_client_frame_is_a_protocol_error() -> None:
    """A client frame without the mask bit: 1002 (section 5.1)."""
    error = protocol_error(client_frame(Opcode.TEXT, b"x", masked=False))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_parser_control_frame_over_125_bytes_is_a_protocol_error(opcode: int) -> None:
    """Control payloads are limited to 125 bytes: 1002."""
    payload = b"\x03\xe8" + b"x" * 124 if opcode == Opcode.CLOSE else b"x" * 126
    assert protocol_error(client_frame(opcode, payload)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_parser_fragmented_control_frame_is_a_protocol_error(opcode: int) -> None:
    """Control frames must not be fragmented: 1002."""
    error = protocol_error(client_frame(opcode, b"", fin=False))
    assert error.code == CloseCode.PROTOCOL_ERROR


def test_parser_continuation_without_start_is_a_protocol_error() -> None:
    """A continuation frame with no message in progress: 1002."""
    error = protocol_error(client_frame(Opcode.CONTINUATION, b"x"))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("second", [Opcode.TEXT, Opcode.BINARY])
def test_parser_new_data_frame_inside_fragmented_message_is_a_protocol_error(
    second: int,
) -> None:
    """A TEXT or BINARY frame while a fragmented message is open: 1002."""
    data = client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(second, b"b")
    assert protocol_error(data).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "payload",
    [
        b"ok\xff",
        b"\xc0\xaf",  # overlong encoding of '/'
        b"\xed\xa0\x80",  # UTF-16 surrogate U+D800
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\x80",  # lone continuation byte
        b"abc\xe2\x82",  # truncated at the end of an unfragmented message
    ],
)
def test_parser_invalid_utf8_text_is_invalid_data(payload: bytes) -> None:
    """A text frame that is not UTF-8: 1007."""
    error = protocol_error(client_frame(Opcode.TEXT, payload))
    assert error.code == CloseCode.INVALID_DATA


def test_parser_invalid_utf8_in_binary_is_fine() -> None:
    """Binary messages are not checked for UTF-8, even when fragmented."""
    data = client_frame(Opcode.BINARY, b"\xe2\x82", fin=False) + client_frame(
        Opcode.CONTINUATION, b"\xff"
    )
    assert parse(data) == [Message(b"\xe2\x82\xff")]


def test_parser_text_after_fragmented_binary_is_validated_afresh() -> None:
    """A text message after a binary one starts with a clean UTF-8 decoder."""
    data = (
        client_frame(Opcode.TEXT, b"\xe2", fin=False)
        + client_frame(Opcode.CONTINUATION, b"\x82\xac")
        + client_frame(Opcode.TEXT, "ü".encode())
    )
    assert parse(data) == [Message("€"), Message("ü")]


def test_parser_invalid_utf8_in_close_reason_is_invalid_data() -> None:
    """A close frame whose reason is not UTF-8: 1007."""
    error = protocol_error(client_frame(Opcode.CLOSE, b"\x03\xe8\xc3"))
    assert error.code == CloseCode.INVALID_DATA


def test_parser_invalid_codepoint_split_across_fragments_is_invalid_data() -> None:
    """A lead byte followed, in the next fragment, by a non-continuation byte: 1007."""
    data = client_frame(Opcode.TEXT, b"a\xe2\x82", fin=False) + client_frame(
        Opcode.CONTINUATION, b"A"
    )
    assert protocol_error(data).code == CloseCode.INVALID_DATA


def test_parser_invalid_utf8_fails_fast_before_the_message_ends() -> None:
    """Invalid text in a first fragment fails at once, without waiting for the last one."""
    parser = FrameParser()
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(client_frame(Opcode.TEXT, b"\xc0\xaf", fin=False)))
    assert info.value.code == CloseCode.INVALID_DATA


def test_parser_text_ending_in_incomplete_codepoint_is_invalid_data() -> None:
    """A final fragment that ends in the middle of a character: 1007."""
    data = client_frame(Opcode.TEXT, b"a\xf0\x9f", fin=False) + client_frame(
        Opcode.CONTINUATION, b"\x98"
    )
    assert protocol_error(data).code == CloseCode.INVALID_DATA


def test_parser_oversized_frame_detected_from_header_alone() -> None:
    """A header claiming 2**62 bytes fails with 1009 before any payload arrives."""
    header = client_frame(Opcode.BINARY, b"", claimed_length=1 << 62)
    assert len(header) == 14  # 2 + 8 length bytes + 4 mask bytes, no payload
    parser = FrameParser(max_message_size=1 << 20)
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(header[:10]))  # even the mask is not needed
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_parser_frame_one_byte_over_limit_is_message_too_big() -> None:
    """A single frame of max_message_size + 1 bytes: 1009."""
    data = client_frame(Opcode.BINARY, b"x" * 101)
    assert protocol_error(data, max_message_size=100).code == CloseCode.MESSAGE_TOO_BIG


def test_parser_oversized_fragmented_message_is_message_too_big() -> None:
    """Fragments each under the limit but together over it: 1009."""
    data = (
        client_frame(Opcode.TEXT, b"a" * 60, fin=False)
        + client_frame(Opcode.CONTINUATION, b"b" * 30, fin=False)
        + client_frame(Opcode.CONTINUATION, b"c" * 30)
    )
    assert protocol_error(data, max_message_size=100).code == CloseCode.MESSAGE_TOO_BIG


def test_parser_yields_events_before_a_later_error() -> None:
    """Events completed before an invalid frame in the same chunk are returned; the error is
    kept and raised by the next call."""
    data = client_frame(Opcode.TEXT, b"fine") + client_frame(Opcode.TEXT, b"x", masked=False)
    parser = FrameParser()
    assert parser.feed(data) == [Message("fine")]
    assert parser.error is not None and parser.error.code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ProtocolError):
        parser.feed(b"")


# FrameParser: conformance details (Autobahn 6.4.x, 5.2 of RFC 6455) and bounds


def test_parser_invalid_utf8_fails_inside_an_incomplete_frame() -> None:
    """Invalid UTF-8 fails as soon as the bytes that make it invalid arrive, before the rest of
    the frame (Autobahn 6.4.3, 6.4.4: one frame sent in chops)."""
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 100
    data = client_frame(Opcode.TEXT, payload)
    cut = len(data) - len(payload) + len("κόσμε".encode()) + 2  # after \xf4\x90
    parser = FrameParser()
    assert parser.feed(data[: cut - 1]) == []  # valid so far, incomplete frame
    with pytest.raises(ProtocolError) as info:
        parser.feed(data[cut - 1 : cut])
    assert info.value.code == CloseCode.INVALID_DATA


def test_parser_incomplete_text_frames_checked_in_pieces_stay_valid() -> None:
    """A valid text message, fragmented, each frame fed byte by byte (every mask offset, and
    characters cut anywhere), is one message."""
    text = "aé€😀" * 30
    encoded = text.encode()
    data = client_frame(Opcode.TEXT, encoded[:37], fin=False) + client_frame(
        Opcode.CONTINUATION, encoded[37:]
    )
    parser = FrameParser()
    events = [event for i in range(len(data)) for event in parser.feed(data[i : i + 1])]
    assert events == [Message(text)]


def test_parser_length_with_the_top_bit_set_is_a_protocol_error() -> None:
    """A 64-bit length must have its most significant bit clear (section 5.2): 1002."""
    header = client_frame(Opcode.BINARY, b"", claimed_length=1 << 63)
    with pytest.raises(ProtocolError) as info:
        FrameParser().feed(header[:10])
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "header",
    [
        struct.pack("!BBH", 0x82, 0xFE, 125),  # 16-bit length for what fits in 7 bits
        struct.pack("!BBH", 0x82, 0xFE, 0),
        struct.pack("!BBQ", 0x82, 0xFF, 65535),  # 64-bit length for what fits in 16 bits
        struct.pack("!BBQ", 0x82, 0xFF, 5),
    ],
)
def test_parser_length_not_minimally_encoded_is_a_protocol_error(header: bytes) -> None:
    """Section 5.2: "the minimal number of bytes MUST be used to encode the length"."""
    with pytest.raises(ProtocolError) as info:
        FrameParser().feed(header + b"\x00\x00\x00\x00")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_parser_endless_empty_fragments_end_with_1009() -> None:
    """A message that never ends, in empty continuation frames: 1009 after MAX_FRAGMENTS, with
    nothing buffered meanwhile."""
    parser = FrameParser()
    parser.feed(client_frame(Opcode.TEXT, b"a", fin=False))
    batch = client_frame(Opcode.CONTINUATION, b"", fin=False) * 1000
    with pytest.raises(ProtocolError) as info:
        for _ in range(MAX_FRAGMENTS // 1000 + 1):
            parser.feed(batch)
            assert len(parser._message) == 1 and len(parser._buffer) == 0
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_parser_fragments_up_to_the_limit_make_a_message() -> None:
    """MAX_FRAGMENTS one-byte fragments are a message; one more fragment is 1009."""
    payload = os.urandom(MAX_FRAGMENTS)
    # Continuation frames of one byte, masked with a zero key (the payload goes as it is).
    middle = b"".join(
        b"\x00\x81\x00\x00\x00\x00" + payload[i : i + 1] for i in range(1, MAX_FRAGMENTS - 1)
    )
    first = client_frame(Opcode.BINARY, payload[:1], fin=False)
    last = client_frame(Opcode.CONTINUATION, payload[-1:])
    assert FrameParser().feed(first + middle + last) == [Message(payload)]
    one_more = first + middle + client_frame(Opcode.CONTINUATION, b"", fin=False) + last
    assert protocol_error(one_more).code == CloseCode.MESSAGE_TOO_BIG
