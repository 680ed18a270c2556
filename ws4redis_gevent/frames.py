"""RFC 6455 framing without I/O: bytes in, messages and frames out.

The parser is fed whatever the socket returned and yields complete events. It enforces the rules
a server must check on client frames (section 5) and the message size limit before buffering a
payload, so a forged 64-bit length costs nothing.
"""

from __future__ import annotations

import codecs
import enum
import struct
from dataclasses import dataclass
from typing import Protocol

from .exceptions import ProtocolError


class Inflater(Protocol):
    """Decompresses a message's frames (``deflate.Inflater``, when permessage-deflate is on)."""

    def feed(self, data: bytes, limit: int, final: bool = False) -> bytes:
        """The decompressed bytes of ``data``; ProtocolError (1009) beyond ``limit``."""
        ...


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close codes this server sends or accepts (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


# Codes a peer may put on the wire: 1005, 1006 and 1015 are reserved for local use (7.4.1),
# 3000-4999 belong to libraries and applications (7.4.2).
_SENDABLE = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame on the wire."""
    return code in _SENDABLE or 3000 <= code <= 4999


@dataclass(frozen=True)
class Close:
    """A close frame's payload: a status code and a UTF-8 reason (RFC 6455 section 5.5.1)."""

    code: int = CloseCode.NORMAL
    reason: str = ""

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        """Decode a received close payload, raising ProtocolError if it is malformed."""
        if not payload:
            return cls(CloseCode.NO_STATUS)
        if len(payload) == 1:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close frame with a one-byte payload")
        (code,) = struct.unpack("!H", payload[:2])
        if not is_valid_close_code(code):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
        return cls(code, reason)

    def serialize(self) -> bytes:
        """Encode for a close frame; the reason is cut to fit the 125-byte control limit."""
        if not is_valid_close_code(self.code):
            raise ValueError(f"close code {self.code} cannot be sent")
        reason = self.reason.encode("utf-8")[:123]
        # Cutting may split a character: drop the incomplete tail.
        reason = reason.decode("utf-8", "ignore").encode("utf-8")
        return struct.pack("!H", self.code) + reason

    def __str__(self) -> str:
        try:
            name = CloseCode(self.code).name
        except ValueError:
            name = "application"
        return f"{self.code} ({name}){' ' + self.reason if self.reason else ''}"


def encode_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """Frame ``payload`` as a server frame (unmasked, section 5.1)."""
    head = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", head, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", head, 126, length)
    else:
        header = struct.pack("!BBQ", head, 127, length)
    return header + payload


def encode_message(payload: bytes | str) -> bytes:
    """Frame one whole message: text if it is valid UTF-8, binary otherwise."""
    if isinstance(payload, str):
        return encode_frame(Opcode.TEXT, payload.encode("utf-8"))
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return encode_frame(Opcode.BINARY, payload)
    return encode_frame(Opcode.TEXT, payload)


def encode_close(close: Close) -> bytes:
    """Frame a close frame carrying ``close``."""
    return encode_frame(Opcode.CLOSE, close.serialize())


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask``, one big-integer operation for the whole payload."""
    length = len(payload)
    if not length:
        return payload
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


@dataclass(frozen=True)
class Message:
    """A complete data message received from the client."""

    data: bytes | str

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)


@dataclass(frozen=True)
class Ping:
    payload: bytes


@dataclass(frozen=True)
class Pong:
    payload: bytes


Event = Message | Ping | Pong | Close


# A message may come in any number of frames (RFC 6455), but each costs parsing time, so a
# message of endless tiny fragments would keep a worker busy forever: at most this many, 1009
# beyond. (Fragments cost no memory of their own: payloads are joined as they arrive.)
MAX_FRAGMENTS = 100_000


class FrameParser:
    """Turns bytes received from a client into events, checking every rule on the way.

    Raises ProtocolError carrying the close code to answer with. Memory: the unparsed bytes
    (at most one frame, which the size limit bounds, plus one read) and the message being
    reassembled (one buffer of at most ``max_message_size`` bytes, however many fragments).

    With ``inflater`` (permessage-deflate negotiated), messages whose first frame has RSV1 set
    are decompressed; ``max_message_size`` then bounds their compressed and their decompressed
    size.
    """

    def __init__(self, max_message_size: int = 1 << 20, inflater: Inflater | None = None) -> None:
        self.max_message_size = max_message_size
        self.inflater = inflater
        self._buffer = bytearray()
        self._message = bytearray()
        self._fragments = 0  # frames of the message being received so far
        self._wire_size = 0  # its payload bytes so far, as received (compressed or not)
        self._fragment_opcode: int | None = None
        self._compressed = False
        self._checked = 0  # bytes of the incomplete frame in the buffer already UTF-8 checked
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes and return every event they complete, in order.

        Raises:
            ProtocolError: at the first frame that breaks a rule. When valid frames came before
                it in the same data, their events are returned first and the error is kept in
                ``error``, raised by the next call.
        """
        if self.error is not None:
            raise self.error
        self._buffer += data
        events: list[Event] = []
        while True:
            try:
                frame = self._next_frame()
                if frame is None:
                    return events
                event = self._handle(*frame)
            except ProtocolError as exc:
                self.error = exc
                if events:
                    return events
                raise
            if event is not None:
                events.append(event)

    def _next_frame(self) -> tuple[int, bytes] | None:
        # A whole frame: its first byte (FIN, RSV1, opcode) and its unmasked payload.
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        opcode, length = first & 0x0F, second & 0x7F
        self._check_header(first, second)
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            offset = 4
            if length < 126:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            offset = 10
            if length >> 63:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "64-bit length with its top bit set")
            if length < 1 << 16:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
        if opcode in DATA_OPCODES and self._wire_size + length > self.max_message_size:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG, f"message exceeds {self.max_message_size} bytes"
            )
        end = offset + 4 + length
        if len(buf) < end:
            self._check_partial(first, buf, offset)
            return None
        mask = bytes(buf[offset : offset + 4])
        payload = unmask(bytes(buf[offset + 4 : end]), mask)
        del buf[:end]
        if opcode in DATA_OPCODES:
            self._wire_size += length
        return first, payload

    def _check_header(self, first: int, second: int) -> None:
        """The rules a frame's first two bytes must follow (sections 5.2, 5.4, 5.5, and RFC
        7692 section 6 for RSV1), checked before anything else of the frame arrived."""
        fin, opcode = first & 0x80, first & 0x0F
        if first & 0x30 or (first & 0x40 and not self._may_compress(opcode)):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set without extension")
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if not second & 0x80:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "client frame is not masked")
        if opcode in CONTROL_OPCODES:
            if (second & 0x7F) > 125 or not fin:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, "control frame too long or fragmented"
                )
        elif opcode == Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation without a message")
        elif self._fragment_opcode is not None:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")

    def _may_compress(self, opcode: int) -> bool:
        # RSV1 marks a compressed message on its first frame only (RFC 7692 section 6).
        return self.inflater is not None and opcode in (Opcode.TEXT, Opcode.BINARY)

    def _check_partial(self, first: int, buf: bytearray, offset: int) -> None:
        """Check the UTF-8 of an uncompressed text frame's payload received so far, so that
        invalid text fails where it becomes invalid, not when its frame ends (section 8.1)."""
        opcode = first & 0x0F
        if opcode == Opcode.CONTINUATION:
            if self._fragment_opcode != Opcode.TEXT or self._compressed:
                return
        elif opcode != Opcode.TEXT or first & 0x40:
            return
        start = offset + 4 + self._checked
        if len(buf) <= start:
            return
        mask = bytes(buf[offset : offset + 4])
        rotation = self._checked % 4
        chunk = unmask(bytes(buf[start:]), mask[rotation:] + mask[:rotation])
        self._checked += len(chunk)
        self._check_utf8(chunk, final=False)

    def _check_utf8(self, data: bytes, final: bool) -> None:
        try:
            self._utf8.decode(data, final=final)
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "text message is not UTF-8") from None

    def _handle(self, first: int, payload: bytes) -> Event | None:
        fin, opcode = bool(first & 0x80), first & 0x0F
        if opcode == Opcode.CLOSE:
            return Close.parse(payload)
        if opcode == Opcode.PING:
            return Ping(payload)
        if opcode == Opcode.PONG:
            return Pong(payload)
        if opcode != Opcode.CONTINUATION:
            self._fragment_opcode = opcode
            self._compressed = bool(first & 0x40)
        self._fragments += 1
        if self._fragments > MAX_FRAGMENTS:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG, f"message in more than {MAX_FRAGMENTS} fragments"
            )
        if self._compressed:
            assert self.inflater is not None
            limit = self.max_message_size - len(self._message)
            payload = self.inflater.feed(payload, limit, final=fin)
            checked = 0
        else:
            checked, self._checked = self._checked, 0
        if self._fragment_opcode == Opcode.TEXT:
            # Validate as fragments arrive, so invalid text fails fast (section 8.1).
            self._check_utf8(payload[checked:] if checked else payload, final=fin)
        if not fin:
            self._message += payload
            return None
        return self._complete(payload)

    def _complete(self, last: bytes) -> Message:
        if self._message:
            self._message += last
            data = bytes(self._message)
        else:
            data = last
        is_text = self._fragment_opcode == Opcode.TEXT
        self._message = bytearray()
        self._fragments = 0
        self._wire_size = 0
        self._fragment_opcode = None
        self._compressed = False
        self._utf8.reset()
        return Message(data.decode("utf-8") if is_text else data)
