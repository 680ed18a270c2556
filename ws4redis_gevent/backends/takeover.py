"""Taking over a connection's socket after the 101 response, and the RFC 6455 websocket on it.

Shared by the backends whose server hands the connection over (gevent's pywsgi, gunicorn's
gevent workers, gevent-websocket's handler, uWSGI): each one says how to find the socket and
what the server's reader has buffered; from there on ``GeventWebSocket`` parses and writes
frames itself. Not a backend: backends import this module, never each other.
"""

from __future__ import annotations

import _socket
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gevent
import gevent.lock
import gevent.socket
from gevent import pywsgi

from ..deflate import DeflateParams, Inflater
from ..exceptions import ConnectionClosed
from ..frames import Close, Event, FrameParser, Opcode, encode_close, encode_frame
from ..outgoing import Outgoing

# What one read takes from the socket, and so the work between two checks of the relay's time
# slice (see _next_events): 16 KiB of minimal frames is about 2,700 of them, a few milliseconds
# of parsing. Smaller reads cost more per byte of big messages (Python work per read).
READ_SIZE = 16384
DRAIN_TIMEOUT = 2.0
DRAIN_LIMIT = 1 << 20


class GeventWebSocket:
    """A websocket over a gevent socket: frames parsed by FrameParser, writes serialised.

    It reads the socket itself, with no buffered reader: ``buffered`` holds what the server's
    reader had already taken from the socket after the handshake (frames a client sent right
    behind it), and is parsed first.
    """

    _eof = False  # the client's end of stream was read: nothing is left to drain

    def __init__(
        self,
        sock: Any,
        buffered: bytes,
        max_message_size: int,
        deflate: DeflateParams | None = None,
    ) -> None:
        self._sock = sock
        inflater = Inflater.for_params(deflate) if deflate is not None else None
        self._parser = FrameParser(max_message_size, inflater)
        self._write_lock = gevent.lock.Semaphore()
        self.close_sent = False
        # A write that makes no progress for this long means the peer is gone (or stopped
        # reading): ConnectionClosed. The relay sets it from its ping settings.
        self.write_timeout: float | None = None
        # The end of a frame a non-blocking write cut short: whatever is written next (by any
        # greenlet: the writer, a pong, a close frame) goes after it, never inside the frame.
        self._tail = b""
        # Non-blocking writes go straight to the descriptor (gevent keeps sockets in
        # non-blocking mode); only for plain sockets, never under TLS.
        self._fd: int | None = sock.fileno() if _is_plain_nonblocking(sock) else None
        self._buffered = buffered
        self._watcher: Any = None  # the event loop's watch on the socket while parked

    def receive(self) -> list[Event]:
        """The events completed by one read, which waits for data; empty when that read
        completed none. ConnectionClosed at the end of the stream."""
        events = self._next_events(self._read_blocking)
        return events if events is not None else []  # (a blocking read never gives None)

    def receive_nowait(self) -> list[Event] | None:
        """The events completed by one read of what the socket holds now: empty when it
        completed none, None when there was nothing to read (nothing to wait for in this
        greenlet: ``park`` until more arrives). ConnectionClosed at the end of the stream."""
        return self._next_events(self._read_nowait)

    def _next_events(self, read: Callable[[], bytes | None]) -> list[Event] | None:
        # One read (at most READ_SIZE bytes) per call, never a loop until a frame completes:
        # a client sending endless empty fragments would keep that loop busy for good, and
        # with it the whole worker.
        if self._parser.error is not None:
            raise self._parser.error
        data: bytes | None = self._buffered
        if data:
            self._buffered = b""
        else:
            data = read()
            if data is None:
                return None
            if not data:
                self._eof = True
                raise ConnectionClosed("end of stream")
        return self._parser.feed(data)

    def _read_blocking(self) -> bytes:
        # An idle websocket waits with no read buffer: each read allocates one.
        sock = self._sock
        try:
            if type(sock) is not _socket.socket:
                return bytes(sock.recv(READ_SIZE))
            while True:  # a bare socket (see _take_over): wait on its descriptor
                try:
                    return os.read(sock.fileno(), READ_SIZE)
                except BlockingIOError:
                    gevent.socket.wait_read(sock.fileno())
        except (OSError, ValueError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    def _read_nowait(self) -> bytes | None:
        if self._fd is None:
            raise ConnectionClosed("the socket is closed")
        try:
            return os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._eof = True  # a reset: nothing more will come, nothing to drain
            raise ConnectionClosed(str(exc)) from exc

    @property
    def can_park(self) -> bool:
        """Whether ``park`` and ``receive_nowait`` work: on plain sockets, not under TLS."""
        return self._fd is not None

    def park(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` (from the event loop: it must not block) once the socket has
        something to read: frames, the end of the stream, or an error. Until then the
        websocket needs no greenlet."""
        if self._buffered or self._fd is None or self._parser.error is not None:
            # Already there: bytes read ahead, or an error found behind the last events.
            gevent.get_hub().loop.run_callback(callback)
            return
        watcher = self._watcher
        if watcher is None:
            watcher = self._watcher = gevent.get_hub().loop.io(self._fd, 1)
        watcher.start(self._wake, callback)

    def _wake(self, callback: Callable[[], Any]) -> None:
        if self._watcher is not None:
            self._watcher.stop()  # one call per park: the callback reads, then parks again
        callback()

    def _write(self, data: bytes) -> None:
        try:
            with self._write_lock:
                if self._tail:
                    data, self._tail = self._tail + data, b""
                if self._fd is None:
                    self._sock.sendall(data)
                else:
                    self._write_fd(self._fd, data, self.write_timeout)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc

    @staticmethod
    def _write_fd(fd: int, data: bytes, timeout: float | None) -> None:
        # sendall with a deadline on progress rather than on the whole write: a big backlog
        # to a live client may take long, a peer that takes nothing at all is dead.
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            try:
                gevent.socket.wait_write(fd, timeout=timeout)
            except TimeoutError as exc:
                raise ConnectionClosed(f"the peer took nothing for {timeout:.1f}s") from exc

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
        """Write without blocking; returns how many bytes of ``data`` went out.

        0 while another greenlet is writing or an earlier write is unfinished, so frames never
        interleave. When the socket takes only part of ``data``, the websocket keeps the rest
        (``write_pending``) and sends it before anything else (``finish_write``).
        """
        if self.close_sent:
            raise ConnectionClosed("close frame already sent")
        if self._fd is None or self._tail or self._write_lock.locked():
            return 0
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc
        if 0 < sent < len(data):
            self._tail = data[sent:]
        return sent

    @property
    def write_pending(self) -> bool:
        """Whether a cut-short write waits to be finished (by ``finish_write``)."""
        return bool(self._tail)

    def finish_write(self) -> None:
        """Send the end of a cut-short write, blocking this greenlet until it is out."""
        if self._tail:
            self._write(b"")

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

    def abort(self) -> None:
        # shutdown() wakes the greenlet waiting to read (end of stream); it then closes the
        # socket. Closing it here would leave that greenlet waiting on a dead descriptor.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def shutdown(self, drain: bool = False) -> None:
        if drain and not self._eof:
            self._drain()
        # Never write to (or watch) the descriptor number again: once closed, the kernel gives
        # it to the next connection accepted.
        self._fd = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        self.close_sent = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _drain(self) -> None:
        # Send our FIN, then read until the client's: closing a socket that still has unread
        # data makes the kernel answer with a reset, which can destroy our close frame before
        # the client reads it.
        # At most DRAIN_LIMIT bytes, yielding after each read: a client that keeps flooding
        # after our close frame gets a reset, and never holds the worker.
        try:
            self._sock.shutdown(socket.SHUT_WR)
            drained = 0
            with gevent.Timeout(DRAIN_TIMEOUT, False):
                while drained < DRAIN_LIMIT and (data := self._read_blocking()):
                    drained += len(data)
                    gevent.sleep(0)
        except (OSError, ValueError, ConnectionClosed):
            pass


def take_buffered(sock: Any, rfile: Any) -> bytes:
    """The bytes ``rfile`` has buffered beyond the handshake, without blocking: peek reads the
    socket only when the buffer is empty, and then only what is there already."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        buffered = rfile.peek(1)
        return rfile.read1(len(buffered)) if buffered else b""
    except (OSError, ValueError):
        return b""  # nothing there yet (would block), or the stream ended: recv will tell
    finally:
        sock.settimeout(timeout)


def _release_reader(handler: Any, environ: dict[str, Any], rfile: Any) -> None:
    # pywsgi keeps the connection's buffered reader (8 KiB) until the request ends, i.e. for
    # the websocket's whole life. Its bytes are taken; pywsgi does not read the connection
    # again after the upgrade (close_connection), so the reader is let go to be freed.
    if isinstance(handler, pywsgi.WSGIHandler) and handler.rfile is rfile:
        handler.rfile = _NO_READER
        wsgi_input = getattr(handler, "wsgi_input", None)
        if wsgi_input is not None and getattr(wsgi_input, "rfile", None) is rfile:
            wsgi_input.rfile = _NO_READER
        # The parsed request headers (email.message objects, about 1.5 KiB) are only read
        # again by an access log when the request ends; the environ holds the same values.
        if getattr(handler, "headers", None) is not None:
            handler.headers = EnvironHeaders(environ)
    if environ.get("wsgi.input") is rfile:
        environ["wsgi.input"] = _NO_READER


class EnvironHeaders:
    """The request headers, read from the environ (``HTTP_USER_AGENT`` as ``user-agent``)."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def items(self) -> list[tuple[str, str]]:
        return [
            (key[5:].replace("_", "-").lower(), value)
            for key, value in self._environ.items()
            if key.startswith("HTTP_")
        ]

    def get(self, name: str, default: Any = None) -> Any:
        return self._environ.get("HTTP_" + name.upper().replace("-", "_"), default)


class _NoReader:
    """Stands for the released reader: an empty, closed stream."""

    closed = True

    def read(self, size: int = -1) -> bytes:
        return b""

    readline = read1 = read


def _take_over(sock: Any) -> _socket.socket:
    """The connection on a socket object of its own: the server closes its socket object when
    the request ends, and a websocket served without a greenlet (``park``) outlives it. A bare
    socket: the websocket reads and writes its descriptor and waits on it itself, so gevent's
    socket object, with its two watchers, would only cost memory."""
    family, kind, proto = sock.family, sock.type, sock.proto
    return _socket.socket(family, kind, proto, sock.detach())


def _is_plain_nonblocking(sock: Any) -> bool:
    if type(sock) is not gevent.socket.socket and type(sock) is not _socket.socket:
        return False
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


_NO_READER = _NoReader()
