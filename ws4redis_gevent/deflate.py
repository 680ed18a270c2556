"""permessage-deflate (RFC 7692) without I/O: negotiation, compression, bounded decompression.

The server always uses ``server_no_context_takeover`` (section 7.1.1.1): each message it sends
is compressed on its own, so a message fanned out to many websockets is compressed once and the
same frame goes to all of them. One compressor per window size serves the whole process; a
full flush after each message (section 7.2.1 with ``Z_FULL_FLUSH``) keeps later messages from
referring to earlier ones.

Client messages are decompressed with the client's context takeover or without, as it offered.
What an inflate context may cost is bounded by ``max_window_bits``: the client is told to use
at most that window (``client_max_window_bits``) when its offer lets the server choose, and is
told not to keep its context between messages (``client_no_context_takeover``) when it does not;
so a websocket keeps at most one inflate state with a window of ``2**max_window_bits`` bytes
between messages, none when the client does not take context over. Decompressed output is
limited to the message size limit: a "zip bomb" ends with 1009 after at most that many bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .exceptions import ProtocolError
from .frames import CloseCode

EXTENSION = "permessage-deflate"
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15
LEVEL = 1
MEM_LEVEL = 8
# Section 7.2.2: the end of a flushed block, removed by the sender and put back to decompress.
TAIL = b"\x00\x00\xff\xff"


@dataclass(frozen=True)
class DeflateParams:
    """What was agreed for one websocket (the server never takes its context over)."""

    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS
    client_no_context_takeover: bool = False
    # What the response says; the values above hold whatever it says.
    response: str = EXTENSION


class OfferDeclined(ValueError):
    """An offer this server cannot accept (malformed, or parameters it does not know)."""


def negotiate(header: str | None, max_window_bits: int = MAX_WINDOW_BITS) -> DeflateParams | None:
    """The parameters of the first acceptable permessage-deflate offer in a
    Sec-WebSocket-Extensions request header, or None (no compression).

    ``max_window_bits`` bounds the client's window, i.e. the memory of each socket's inflate
    context (see the module's docstring).
    """
    for name, params in parse_extensions(header or ""):
        if name != EXTENSION:
            continue
        try:
            return _accept(params, max_window_bits)
        except OfferDeclined:
            continue  # a client may offer several variants, the next one may do
    return None


def parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """``a; x=1; y, b`` -> ``[("a", [("x", "1"), ("y", None)]), ("b", [])]`` (RFC 6455 9.1;
    quoted values lose their quotes)."""
    offers = []
    for item in header.split(","):
        parts = [part.strip() for part in item.split(";")]
        if not parts[0]:
            continue
        params: list[tuple[str, str | None]] = []
        for part in parts[1:]:
            name, sep, value = part.partition("=")
            params.append((name.strip().lower(), value.strip().strip('"') if sep else None))
        offers.append((parts[0].lower(), params))
    return offers


def _accept(params: list[tuple[str, str | None]], max_window_bits: int) -> DeflateParams:
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            raise OfferDeclined(f"{name} given twice")
        seen[name] = value
    unknown = set(seen) - {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    if unknown:
        raise OfferDeclined(f"unknown parameters {sorted(unknown)}")
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if flag in seen and seen[flag] is not None:
            raise OfferDeclined(f"{flag} takes no value")
    response = [EXTENSION, "server_no_context_takeover"]
    server_bits = MAX_WINDOW_BITS
    if "server_max_window_bits" in seen:
        server_bits = _window_bits(seen["server_max_window_bits"], required=True)
        response.append(f"server_max_window_bits={server_bits}")
    client_no_takeover = "client_no_context_takeover" in seen
    client_bits = MAX_WINDOW_BITS
    if "client_max_window_bits" in seen:
        offered = _window_bits(seen["client_max_window_bits"], required=False)
        client_bits = min(offered, max_window_bits)
        response.append(f"client_max_window_bits={client_bits}")
    elif max_window_bits < MAX_WINDOW_BITS:
        # The client will use a 32 KiB window and cannot be told otherwise: it must then not
        # keep its context, so that no inflate state outlives a message (section 7.1.1.2).
        client_no_takeover = True
    if client_no_takeover:
        response.append("client_no_context_takeover")
    return DeflateParams(server_bits, client_bits, client_no_takeover, "; ".join(response))


def _window_bits(value: str | None, required: bool) -> int:
    if value is None:
        if required:
            raise OfferDeclined("server_max_window_bits needs a value")
        return MAX_WINDOW_BITS
    if not value.isdigit() or not MIN_WINDOW_BITS <= int(value) <= MAX_WINDOW_BITS:
        raise OfferDeclined(f"invalid window bits {value!r}")
    return int(value)


# -- sending ---------------------------------------------------------------------------------

_compressors: dict[int, zlib._Compress] = {}


def compress(payload: bytes, window_bits: int = MAX_WINDOW_BITS) -> bytes:
    """``payload`` compressed on its own, as a message's payload (section 7.2.1)."""
    compressor = _compressors.get(window_bits)
    if compressor is None:
        compressor = _compressors[window_bits] = _new_compressor(window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
    return data[:-4] if data.endswith(TAIL) else data


def _new_compressor(window_bits: int) -> zlib._Compress:
    if window_bits == MIN_WINDOW_BITS:
        # zlib cannot compress with a 256-byte window; Huffman coding alone refers back to
        # nothing, so any window decodes it.
        return zlib.compressobj(LEVEL, zlib.DEFLATED, -9, MEM_LEVEL, zlib.Z_HUFFMAN_ONLY)
    return zlib.compressobj(LEVEL, zlib.DEFLATED, -window_bits, MEM_LEVEL)


def deflate_frame(frame: bytes, window_bits: int = MAX_WINDOW_BITS) -> bytes:
    """The compressed twin of an unfragmented server frame (RSV1 set), or ``frame`` itself
    when compressing would not make it smaller."""
    first, code = frame[0], frame[1] & 0x7F
    if first & 0x0F not in (0x1, 0x2) or not first & 0x80:
        return frame  # control frames and fragments go as they are
    offset = 2 if code < 126 else 4 if code == 126 else 10
    payload = frame[offset:]
    compressed = compress(payload, window_bits)
    if len(compressed) >= len(payload):
        return frame
    return _header(first | 0x40, len(compressed)) + compressed


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


# -- receiving -------------------------------------------------------------------------------


class Inflater:
    """Decompresses the messages of one websocket, each within a size limit.

    With context takeover, one decompressor lives from the first compressed message to the end
    of the websocket; without, each message gets a new one, dropped at its end.
    """

    __slots__ = ("window_bits", "no_context_takeover", "_decompressor")

    def __init__(self, window_bits: int = MAX_WINDOW_BITS, no_context_takeover: bool = False):
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self._decompressor: zlib._Decompress | None = None

    @classmethod
    def for_params(cls, params: DeflateParams) -> Inflater:
        return cls(params.client_max_window_bits, params.client_no_context_takeover)

    def feed(self, data: bytes, limit: int, final: bool = False) -> bytes:
        """Decompress a fragment of a compressed message; ``final`` at the message's last one.

        Raises:
            ProtocolError: 1009 when the output would exceed ``limit`` bytes, 1002 when the
                data is not valid deflate.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.window_bits)
        if final:
            data += TAIL
        try:
            # One byte more than allowed tells a message over the limit from one at it.
            out = decompressor.decompress(data, limit + 1)
        except zlib.error as exc:
            reason = f"invalid compressed data: {exc}"
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, reason) from None
        if len(out) > limit:
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big once decompressed")
        if final and (self.no_context_takeover or decompressor.eof):
            # (A block with BFINAL set ends the stream: the next message starts a new one.)
            self._decompressor = None
        return out

    @property
    def holds_context(self) -> bool:
        """Whether a decompressor is kept (between messages: context takeover)."""
        return self._decompressor is not None
