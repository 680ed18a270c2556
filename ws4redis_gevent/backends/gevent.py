"""The gevent backend: gevent's pywsgi server (also under gunicorn's gevent workers).

gevent-websocket's handler upgrades every request before the application runs, so it cannot
answer 403 before the upgrade, and its close frames drop the status code. This backend lets the
middleware decide first, then writes the 101 response and RFC 6455 frames itself on the socket
(``takeover.GeventWebSocket``). Under gevent-websocket's handler, the ``geventwebsocket``
backend serves instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import gevent
from gevent import pywsgi

from ..deflate import DeflateParams
from ..exceptions import ImproperlyConfigured
from .takeover import (
    GeventWebSocket,
    _is_plain_nonblocking,
    _release_reader,
    _take_over,
    take_buffered,
)

# Header lines (RFC 9112 section 5): a token, a colon, the value between optional whitespace.
# Anything else (whitespace before the colon, a folded line, control characters, a line cut by
# the end of the stream) makes the request a 400.
_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE = r"[\t\x20-\x7e\x80-\xff]*"
_FIELD = re.compile(rf"({_NAME}):[ \t]*({_VALUE})\r?\n")
_FIELDS = re.compile(rf"(?:{_NAME}:{_VALUE}\r?\n)*")
_BLANK_LINE = re.compile(rb"\n\r?\n")
MAX_FIELD_LINE = 65536
MAX_FIELDS = 100


class RequestHeaders:
    """A request's header fields, parsed for pywsgi in place of its ``email.message`` object.

    pywsgi parses headers with the standard library's e-mail parser, the costliest part of a
    websocket handshake on the server; this parser reads the same lines, within the same
    limits (100 lines of at most 64 KiB), and offers what pywsgi and gunicorn read: ``get``,
    ``getheader``, ``typeheader``, ``headers``, ``items``, deletion and ``status`` (non-empty:
    why the request is a 400).
    """

    __slots__ = ("_fields", "_first", "status")

    def __init__(self, fields: Sequence[tuple[str, str]] = (), status: str = "") -> None:
        self._fields = list(fields)
        self._first: dict[str, str] = {}
        for name, value in reversed(self._fields):
            self._first[name.lower()] = value
        self.status = status

    @classmethod
    def read(cls, rfile: Any) -> RequestHeaders:
        """Read header lines from ``rfile`` (a buffered reader) up to the blank line ending
        them: in one piece when the reader holds them all already (a handshake's usually
        arrive in one packet), else line by line."""
        buffered = rfile.peek(1)
        if buffered[:1] == b"\n" or buffered[:2] == b"\r\n":
            rfile.readline()
            return cls()
        blank = _BLANK_LINE.search(buffered, 0, MAX_FIELD_LINE)
        if blank is None:
            return cls._read_lines(rfile)
        block = rfile.read(blank.end())[: blank.start() + 1].decode("latin-1")
        if _FIELDS.fullmatch(block) is None:
            return cls(status="malformed header line")
        fields = _FIELD.findall(block)
        if len(fields) > MAX_FIELDS:
            return cls(status=f"more than {MAX_FIELDS} header lines")
        return cls([(name, value.rstrip(" \t")) for name, value in fields])

    @classmethod
    def _read_lines(cls, rfile: Any) -> RequestHeaders:
        fields: list[tuple[str, str]] = []
        while True:
            line = rfile.readline(MAX_FIELD_LINE + 1)
            if line == b"\r\n" or line == b"\n":
                return cls(fields)
            if len(line) > MAX_FIELD_LINE:
                return cls(status="header line too long")
            if not line.endswith(b"\n"):
                raise RequestCutShort  # the stream ended in the headers
            if len(fields) == MAX_FIELDS:
                return cls(status=f"more than {MAX_FIELDS} header lines")
            match = _FIELD.fullmatch(line.decode("latin-1"))
            if match is None:
                return cls(status="malformed header line")
            name, value = match.groups()
            fields.append((name, value.rstrip(" \t")))

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of the field ``name`` (any case), or ``default``."""
        return self._first.get(name.lower(), default)

    getheader = get

    @property
    def typeheader(self) -> str | None:
        return self._first.get("content-type")

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        self._fields = [field for field in self._fields if field[0].lower() != lower]
        self._first.pop(lower, None)

    @property
    def headers(self) -> list[str]:
        """The header lines, as ``email.message``-based headers give them to pywsgi."""
        return [f"{name}: {value}\r\n" for name, value in self._fields]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def environ_items(self) -> list[tuple[str, str]]:
        """The fields as CGI variables (``HTTP_USER_AGENT``), as pywsgi names them: names with
        an underscore are dropped (they could pass for another header), and Content-Type and
        Content-Length, which are CGI variables of their own, are left out."""
        items = []
        for name, value in self._fields:
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
                items.append(("HTTP_" + key, value))
        return items


class RequestCutShort(BaseException):
    """The client's stream ended before its request headers did: the client is gone, and the
    connection is closed with no response and no log line. (A BaseException, so that pywsgi's
    handling of invalid requests, which answers 400 and logs, lets it through.)"""


class LeanRequestMixin:
    """For pywsgi handlers: request headers read by ``RequestHeaders`` (see there)."""

    def handle_one_request(self) -> Any:
        try:
            return super().handle_one_request()  # type: ignore[misc]
        except RequestCutShort:
            self.close_connection = True
            return None

    def MessageClass(self, rfile: Any, *args: Any) -> RequestHeaders:  # noqa: N802 - pywsgi's
        return RequestHeaders.read(rfile)

    def _headers(self) -> Any:
        headers = getattr(self, "headers", None)
        if isinstance(headers, RequestHeaders):
            return headers.environ_items()
        return super()._headers()  # type: ignore[misc]


class HandshakeDeadlineMixin:
    """For pywsgi handlers: a client has WS4REDIS_HANDSHAKE_TIMEOUT seconds to send its request
    line and headers (one deadline for all of them, so dribbling bytes does not extend it), and
    as long to start its next request on a kept-alive connection; past that the connection is
    closed, with a 408 if the request line had arrived. The application itself (and so an open
    websocket) has no deadline.
    """

    #: Whether the wait for the next request on a kept-alive connection counts against the
    #: deadline. Under gunicorn it does not: proxies keep idle upstream connections open, and
    #: a worker closing one first races with the next request sent on it.
    deadline_while_idle = True

    _handshake_timeout: float | None = None
    _deadline: gevent.Timeout | None = None
    _requests = 0

    def handle_one_request(self) -> Any:
        # What a previous request on this connection left must not describe this one (in an
        # access log line for a 400 or 408, say).
        self.environ: dict[str, Any] | None = None
        self.headers: Any = RequestHeaders()
        self.command = self.path = self.request_version = None
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self._requests += 1
        timeout = self._timeout()
        if not timeout or timeout <= 0:
            return super().handle_one_request()  # type: ignore[misc]
        if self._requests > 1 and not self.deadline_while_idle and not self._next_request():
            return None
        self.requestline: str | None = None
        self._deadline = deadline = gevent.Timeout(timeout)
        deadline.start()
        try:
            return super().handle_one_request()  # type: ignore[misc]
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self.close_connection = True
            if not self.requestline:
                return None  # nothing of a request arrived: just close
            return ("408", _REQUEST_TIMEOUT_RESPONSE)
        finally:
            deadline.close()

    def _next_request(self) -> bool:
        # Wait, with no deadline, until the client sends something (or ends the connection).
        try:
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]
        except (OSError, ValueError):
            return False

    @classmethod
    def _timeout(cls) -> float | None:
        # Read once per process, at the first request: the middleware configures the settings
        # when it is built, before the server serves.
        if HandshakeDeadlineMixin._handshake_timeout is None:
            from ..settings import load

            HandshakeDeadlineMixin._handshake_timeout = load().handshake_timeout or 0.0
        return HandshakeDeadlineMixin._handshake_timeout

    def get_environ(self) -> dict[str, Any]:
        if self._deadline is not None:
            self._deadline.cancel()  # the request has arrived; the application has no deadline
        return super().get_environ()  # type: ignore[misc, no-any-return]


class WebSocketHandler(HandshakeDeadlineMixin, LeanRequestMixin, pywsgi.WSGIHandler):
    """A pywsgi handler that exposes its socket to the backend as ``ws4redis.socket``, with the
    handshake deadline of ``HandshakeDeadlineMixin`` and the header parser of
    ``RequestHeaders``."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["ws4redis.socket"] = self.socket
        return environ


class GeventBackend:
    """Upgrades requests served by gevent's pywsgi (plain, or in gunicorn's gevent worker)."""

    name = "gevent"

    def accepts(self, environ: Mapping[str, Any]) -> bool:
        if environ.get("wsgi.websocket") is not None:
            return False  # gevent-websocket's handler upgraded it already
        if "ws4redis.socket" in environ or "gunicorn.sock" in environ:
            return hasattr(environ.get("wsgi.input"), "read1")
        return str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent/")

    def upgrade(
        self,
        environ: dict[str, Any],
        start_response: Any,
        headers: list[tuple[str, str]],
        max_message_size: int,
        deflate: DeflateParams | None = None,
    ) -> GeventWebSocket:
        write = start_response("101 Switching Protocols", headers)
        handler = getattr(write, "__self__", None)
        sock = environ.get("ws4redis.socket") or environ.get("gunicorn.sock")
        if sock is None:
            sock = getattr(handler, "socket", None)
        rfile = getattr(handler, "rfile", None) or environ.get("wsgi.input")
        if sock is None or not hasattr(rfile, "read1"):
            raise ImproperlyConfigured("the gevent backend needs gevent's pywsgi server")
        write(b"")  # sends the 101 response now
        if handler is not None:
            # pywsgi must not read another HTTP request from this connection afterwards.
            handler.close_connection = True
        buffered = take_buffered(sock, rfile)
        _release_reader(handler, environ, rfile)
        if _is_plain_nonblocking(sock):
            sock = _take_over(sock)
        return GeventWebSocket(sock, buffered, max_message_size, deflate)


_TIMEOUT_BODY = b"408 Request Timeout: handshake timeout\n"
_REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)
