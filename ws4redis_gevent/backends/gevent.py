"""The gevent backend: gevent's pywsgi server (also under gunicorn's gevent workers).

gevent-websocket's handler upgrades every request before the application runs, so it cannot
answer 403 before the upgrade, and its close frames drop the status code. This backend lets the
middleware decide first, then writes the 101 response and RFC 6455 frames itself on the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import gevent
import gevent.lock
import gevent.socket
from gevent import pywsgi

from ..exceptions import ConnectionClosed, ImproperlyConfigured
from ..frames import Close, Event, FrameParser, Opcode, encode_close, encode_frame
from ..hub import Outgoing

READ_SIZE = 65536
DRAIN_TIMEOUT = 2.0


class GeventWebSocket:
    """A websocket over a gevent socket: frames parsed by FrameParser, writes serialised."""

    def __init__(self, sock: Any, rfile: Any, max_message_size: int) -> None:
        self._sock = sock
        self._rfile = rfile
        self._parser = FrameParser(max_message_size)
        self._write_lock = gevent.lock.Semaphore()
        self.close_sent = False
        # Non-blocking writes go straight to the descriptor (gevent keeps sockets in
        # non-blocking mode); only for plain sockets, never under TLS.
        self._fd: int | None = sock.fileno() if _is_plain_nonblocking(sock) else None

    def receive(self) -> list[Event]:
        if self._parser.error is not None:
            raise self._parser.error
        while True:
            try:
                # read1 returns what the buffer already holds before touching the socket, and
                # the parser yields every complete frame in it: nothing buffered is left behind.
                data = self._rfile.read1(READ_SIZE)
            except (OSError, ValueError) as exc:
                raise ConnectionClosed(str(exc)) from exc
            if not data:
                raise ConnectionClosed("end of stream")
            events = self._parser.feed(data)
            if events:
                return events

    def _write(self, data: bytes) -> None:
        try:
            with self._write_lock:
                self._sock.sendall(data)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc

    def send(self, messages: Sequence[Outgoing]) -> None:
        # Messages pending for this socket leave in one system call.
        if len(messages) == 1:
            self.send_bytes(messages[0].frame)
        else:
            self.send_bytes(b"".join([m.frame for m in messages]))

    def send_bytes(self, data: bytes) -> None:
        """Send already framed bytes, blocking this greenlet until the socket took them."""
        if self.close_sent:
            raise ConnectionClosed("close frame already sent")
        self._write(data)

    def send_nowait(self, data: bytes) -> int:
        """Write what the socket takes now, without blocking; returns how many bytes.

        Returns 0 while another greenlet is writing, so frames never interleave.
        """
        if self.close_sent:
            raise ConnectionClosed("close frame already sent")
        if self._fd is None or self._write_lock.locked():
            return 0
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc

    def ping(self, payload: bytes = b"") -> None:
        if not self.close_sent:
            self._write(encode_frame(Opcode.PING, payload))

    def pong(self, payload: bytes = b"") -> None:
        if not self.close_sent:
            self._write(encode_frame(Opcode.PONG, payload))

    def send_close(self, code: int, reason: str = "") -> None:
        if self.close_sent:
            return
        self.close_sent = True
        self._write(encode_close(Close(code, reason)))

    def shutdown(self, drain: bool = False) -> None:
        if drain:
            self._drain()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _drain(self) -> None:
        # Send our FIN, then read until the client's: closing a socket that still has unread
        # data makes the kernel answer with a reset, which can destroy our close frame before
        # the client reads it.
        try:
            self._sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(DRAIN_TIMEOUT, False):
                while self._rfile.read1(READ_SIZE):
                    pass
        except (OSError, ValueError):
            pass


def _is_plain_nonblocking(sock: Any) -> bool:
    if type(sock) is not gevent.socket.socket:
        return False
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


class WebSocketHandler(pywsgi.WSGIHandler):
    """A pywsgi handler that exposes its socket to the backend as ``ws4redis.socket``."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["ws4redis.socket"] = self.socket
        return environ


class GeventBackend:
    """Upgrades requests served by gevent's pywsgi (plain, or in gunicorn's gevent worker)."""

    name = "gevent"

    def accepts(self, environ: Mapping[str, Any]) -> bool:
        if "ws4redis.socket" in environ or "gunicorn.sock" in environ:
            return hasattr(environ.get("wsgi.input"), "read1")
        return str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent/")

    def upgrade(
        self,
        environ: dict[str, Any],
        start_response: Any,
        headers: list[tuple[str, str]],
        max_message_size: int,
    ) -> GeventWebSocket:
        write = start_response("101 Switching Protocols", headers)
        handler = getattr(write, "__self__", None)
        sock = environ.get("ws4redis.socket") or environ.get("gunicorn.sock")
        if sock is None:
            sock = getattr(handler, "socket", None)
        rfile = environ.get("wsgi.input")
        if sock is None or not hasattr(rfile, "read1"):
            raise ImproperlyConfigured("the gevent backend needs gevent's pywsgi server")
        write(b"")  # sends the 101 response now
        if handler is not None:
            # pywsgi must not read another HTTP request from this connection afterwards.
            handler.close_connection = True
        return GeventWebSocket(sock, rfile, max_message_size)
