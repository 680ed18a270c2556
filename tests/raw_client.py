"""A raw-socket websocket client for protocol tests: hand-made handshakes and hand-masked frames.

It does nothing on its own (no automatic pong, no close reply), so tests decide every byte the
server sees, and it checks what a client must check on server frames: they are never masked.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    """A frame received from the server."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame, None when its payload is empty."""
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    @property
    def close_reason(self) -> str:
        """The reason of a close frame; it must be UTF-8."""
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return self.payload[2:].decode("utf-8")


def handshake_request(path: str, key: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    """The bytes of a correct opening handshake for ``path``; ``extra``: more header lines."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra}"
        "\r\n"
    ).encode("ascii")


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def encode_client_frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A client frame; ``rsv`` is the 3 reserved bits (0-7), ``length`` forges the header's."""
    length = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head += struct.pack("!BH", mask_bit | 126, length)
    else:
        head += struct.pack("!BQ", mask_bit | 127, length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + mask_payload(payload, key)


class RawClient:
    """One websocket connection driven by hand; raises on a failed handshake."""

    def __init__(
        self, port: int, path: str, timeout: float = 5.0, extensions: str | None = None
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        self.sock.sendall(handshake_request(path, key, extra=extra))
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 101"), head
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == expected, headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        self.headers = headers

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending ---------------------------------------------------------------------------

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        fin: bool = True,
        mask: bool = True,
        rsv: int = 0,
        length: int | None = None,
    ) -> None:
        """Send one frame (see ``encode_client_frame``)."""
        self.sock.sendall(encode_client_frame(opcode, payload, fin, mask, rsv, length))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
        self.send_frame(CLOSE, payload)

    # -- receiving -------------------------------------------------------------------------

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            data = self._recv()
            if not data:
                raise EOFError(f"connection closed before {marker!r}: {self._buffer!r}")
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._recv()
            if not data:
                raise EOFError(f"connection closed with {len(self._buffer)}/{size} bytes read")
            self._buffer += data
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self) -> Frame:
        """The next server frame; EOFError at end of stream, TimeoutError after the timeout."""
        first, second = self._read_exactly(2)
        assert not second & 0x80, "the server sent a masked frame (RFC 6455 section 5.1)"
        # RSV1 marks a compressed message once permessage-deflate was negotiated (RFC 7692).
        allowed = (
            0x40 if "permessage-deflate" in self.headers.get("sec-websocket-extensions", "") else 0
        )
        assert not first & 0x70 & ~allowed, "the server set reserved bits without an extension"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        payload = self._read_exactly(length)
        return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0xF, payload)

    def read_until_close(self) -> tuple[Frame, list[Frame]]:
        """Read frames until a close frame; returns it and the frames seen before."""
        seen = []
        while True:
            frame = self.read_frame()
            if frame.opcode == CLOSE:
                return frame, seen
            seen.append(frame)

    def reaches_eof(self) -> bool:
        """Tell whether the server closed the TCP connection (discarding any further frames)."""
        try:
            while self._recv():
                self._buffer = b""
        except TimeoutError:
            return False
        return True
