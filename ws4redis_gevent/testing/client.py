"""A small synchronous websocket client for tests: query flags, heartbeat, recovery, close codes.

It reads with timeouts (``recv(timeout=...)`` raises ``TimeoutError``), answers pings, skips the
application heartbeat unless asked, and keeps the recovery positions of the messages it saw, so
that ``reconnect()`` asks for what it missed (``recover&since=LABEL@POSITION``). It uses the
standard ``socket`` module: under the live server (a gevent-patched process) it yields to the
server's greenlets while it waits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..frames import Close, CloseCode, Opcode

DEFAULT_TIMEOUT = 5.0
FLAGS = (
    "subscribe-broadcast", "subscribe-user", "subscribe-group", "subscribe-session",
    "publish-broadcast", "publish-user", "publish-group", "publish-session", "echo", "recover",
)  # fmt: skip


class HandshakeRefused(Exception):
    """The server answered the handshake with an HTTP status instead of 101."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"handshake refused: {status} {reason}: {body[:200]!r}")
        self.status = status
        self.reason = reason
        self.body = body


class WebsocketClosed(Exception):
    """The websocket was closed (``close`` holds the server's code and reason, or 1006)."""

    def __init__(self, close: Close) -> None:
        super().__init__(f"websocket closed: {close}")
        self.close = close

    @property
    def code(self) -> int:
        return self.close.code


@dataclass(frozen=True)
class Received:
    """A message received on a recovering websocket: ``LABEL POSITION`` and the payload."""

    label: str
    position: str | None
    data: str | bytes

    def json(self) -> Any:
        return json.loads(self.data)


def ws_path(facility: str, *flags: str, prefix: str = "/ws/", **params: str) -> str:
    """The path of a websocket: ``ws_path("chat", "subscribe-user", "echo")``.

    Raises:
        ValueError: a flag this library does not know (a typo would be silently ignored).
    """
    unknown = [flag for flag in flags if flag not in FLAGS]
    if unknown:
        raise ValueError(f"unknown query flag(s) {unknown}: use {', '.join(FLAGS)}")
    query = "&".join([*flags, urlencode(params)] if params else flags)
    return f"{prefix}{facility}{'?' + query if query else ''}"


class WebsocketClient:
    """A websocket connection, opened at construction.

    Args:
        url: ``ws://host:port/ws/FACILITY?flags``.
        headers: extra request headers (``Cookie``, ``Origin``...).
        cookies: cookies to send: a mapping name -> value, or Django's ``SimpleCookie`` (a
            test ``Client``'s ``.cookies``, after ``force_login``).
        heartbeat: the WS4REDIS_HEARTBEAT text: received heartbeats are skipped by ``recv``.
        timeout: default seconds for the handshake and each ``recv``.

    Raises:
        HandshakeRefused: the server answered with an HTTP status (403, 404...).
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        heartbeat: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.headers = dict(headers or {})
        cookie = _cookie_header(cookies)
        if cookie:
            self.headers.setdefault("Cookie", cookie)
        self.close_received: Close | None = None
        self.positions: dict[str, str] = {}  # label -> last position seen (recovery)
        self.resyncs: list[str] = []  # labels the server told to resync
        self.reconnections: list[WebsocketClient] = []
        self._buffer = b""
        self._sock = self._handshake()

    # -- handshake -----------------------------------------------------------------------

    def _handshake(self) -> socket.socket:
        parts = urlsplit(self.url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"not a ws:// URL: {self.url!r}")
        port = parts.port or 80
        sock = socket.create_connection((parts.hostname, port), timeout=self.timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = self._read_until(sock, b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        _, status, reason = (status_line.split(" ", 2) + [""])[:3]
        if status != "101":
            headers = dict(line.split(":", 1) for line in header_lines if ":" in line)
            length = int(headers.get("Content-Length", "0").strip() or 0)
            body = self._buffer
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
            sock.close()
            raise HandshakeRefused(int(status), reason, body)
        return sock

    def _read_until(self, sock: socket.socket, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed during the handshake of {self.url}")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    # -- sending -------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send a text (str) or binary (bytes) message."""
        if isinstance(message, str):
            self._send_frame(Opcode.TEXT, message.encode("utf-8"))
        else:
            self._send_frame(Opcode.BINARY, bytes(message))

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(Opcode.PING, payload)

    def send_heartbeat(self) -> None:
        """Send the heartbeat text; the server echoes it (``recv_heartbeat`` waits for it)."""
        if self.heartbeat is None:
            raise ValueError("this client was made without heartbeat=WS4REDIS_HEARTBEAT")
        self.send(self.heartbeat)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    # -- receiving -----------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message: str for text, bytes for binary (heartbeats skipped).

        On a recovering websocket, the ``LABEL POSITION`` line is removed and the position
        remembered (``recv_recovered`` returns both).

        Raises:
            TimeoutError: nothing arrived within ``timeout`` (default: the client's).
            WebsocketClosed: the server closed the websocket.
        """
        return self._next(timeout, skip_heartbeat=True).data

    def recv_json(self, timeout: float | None = None) -> Any:
        return json.loads(self.recv(timeout))

    def recv_recovered(self, timeout: float | None = None) -> Received:
        """The next message of a websocket opened with ``recover``, with label and position."""
        return self._next(timeout, skip_heartbeat=True)

    def recv_heartbeat(self, timeout: float | None = None) -> None:
        """Wait for a heartbeat; fails on any other message.

        Raises:
            AssertionError: another message came first.
        """
        received = self._next(timeout, skip_heartbeat=False)
        if received.data != self.heartbeat:
            raise AssertionError(f"expected the heartbeat, received {received.data!r}")

    def assert_no_message(self, within: float = 0.2) -> None:
        """Fail if a message (other than a heartbeat) arrives within ``within`` seconds."""
        try:
            received = self._next(within, skip_heartbeat=True)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message, received {received.data!r}")

    def _next(self, timeout: float | None, skip_heartbeat: bool) -> Received:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            opcode, payload = self._read_frame(deadline)
            if opcode in (Opcode.TEXT, Opcode.BINARY):
                data: str | bytes = payload.decode("utf-8") if opcode == Opcode.TEXT else payload
                if skip_heartbeat and self.heartbeat is not None and data == self.heartbeat:
                    continue
                received = self._recovered(data)
                if received is not None:
                    return received
            elif opcode == Opcode.PING:
                self._send_frame(Opcode.PONG, payload)
            elif opcode == Opcode.CLOSE:
                self._on_close(Close.parse(payload) if payload else Close(CloseCode.NO_STATUS))

    def _recovered(self, data: str | bytes) -> Received | None:
        """A recovery frame unpacked; None for ``!resync`` notices (noted in ``resyncs``)."""
        if "recover" not in urlsplit(self.url).query.split("&"):
            return Received("", None, data)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if raw.startswith(b"!resync "):
            self.resyncs.append(raw[len(b"!resync ") :].decode())
            return None
        head, _, payload = raw.partition(b"\n")
        label, _, position = head.decode().partition(" ")
        if position and position != "-":
            self.positions[label] = position
        body: str | bytes = payload.decode("utf-8") if isinstance(data, str) else payload
        return Received(label, position if position != "-" else None, body)

    def _on_close(self, close: Close) -> None:
        self.close_received = close
        with contextlib.suppress(OSError):  # the server may have dropped the connection
            self._send_frame(Opcode.CLOSE, close.serialize() if close.code != 1005 else b"")
        self._sock.close()
        raise WebsocketClosed(close)

    def _read_frame(self, deadline: float) -> tuple[int, bytes]:
        header = self._read_exactly(2, deadline)
        opcode, length = header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2, deadline))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8, deadline))
        payload = self._read_exactly(length, deadline)
        if not header[0] & 0x80:  # fragmented: the server never fragments, but be correct
            _, rest = self._read_frame(deadline)
            return opcode, payload + rest
        return opcode, payload

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            if self.close_received is not None:
                raise WebsocketClosed(self.close_received)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message within the timeout on {self.url}")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.close_received = Close(CloseCode.ABNORMAL, str(exc))
                raise WebsocketClosed(self.close_received) from exc
            if not chunk:
                self.close_received = Close(CloseCode.ABNORMAL, "connection dropped")
                raise WebsocketClosed(self.close_received)
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    # -- closing -------------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> Close:
        """Close the websocket and wait for the server's close frame; returns it."""
        if self.close_received is not None:
            return self.close_received
        with contextlib.suppress(OSError):  # already dropped: wait_closed reports 1006
            self._send_frame(Opcode.CLOSE, Close(code, reason).serialize())
        return self.wait_closed()

    def wait_closed(self, timeout: float | None = None) -> Close:
        """Wait until the server closes (messages meanwhile are dropped); its close code."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while True:
                opcode, payload = self._read_frame(deadline)
                if opcode == Opcode.CLOSE:
                    close = Close.parse(payload) if payload else Close(CloseCode.NO_STATUS)
                    self.close_received = close
                    return close
        except WebsocketClosed as exc:
            return exc.close
        finally:
            self._sock.close()

    def expect_close(self, timeout: float | None = None) -> Close:
        """The close the server sends next (code and reason), answered; fails on a message.

        Raises:
            AssertionError: a message came instead.
        """
        try:
            received = self._next(timeout, skip_heartbeat=True)
        except WebsocketClosed as exc:
            return exc.close
        raise AssertionError(f"expected a close, received {received.data!r}")

    def reconnect(self, **kwargs: Any) -> WebsocketClient:
        """A new connection to the same websocket; with ``recover``, asks for what this one
        missed since its last positions (``since=LABEL@POSITION``)."""
        if self.close_received is None:
            self.close()
        url = self.url
        if self.positions:
            base, _, query = url.partition("?")
            kept = [part for part in query.split("&") if part and not part.startswith("since=")]
            since = [
                urlencode({"since": f"{label}@{position}"})
                for label, position in self.positions.items()
            ]
            url = f"{base}?{'&'.join(kept + since)}"
        options = {"headers": self.headers, "heartbeat": self.heartbeat, "timeout": self.timeout}
        client = WebsocketClient(url, **{**options, **kwargs})
        client.positions = dict(self.positions)
        self.reconnections.append(client)  # closed with this one by ``__exit__``
        return client

    def __enter__(self) -> WebsocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close this websocket (unless closed), and those ``reconnect`` opened."""
        for client in self.reconnections:
            client.__exit__(*exc_info)
        if self.close_received is None:
            try:
                self.close()
            except (OSError, TimeoutError):
                self._sock.close()

    def __repr__(self) -> str:
        return f"<WebsocketClient {self.url}>"


def _cookie_header(cookies: Any) -> str:
    if not cookies:
        return ""
    if isinstance(cookies, Mapping):
        items: Iterable[tuple[str, Any]] = cookies.items()
    else:
        items = cookies
    pairs = []
    for name, value in items:
        value = getattr(value, "value", value)  # a Morsel of SimpleCookie
        pairs.append(f"{name}={value}")
    return "; ".join(pairs)
