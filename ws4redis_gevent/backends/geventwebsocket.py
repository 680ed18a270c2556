"""The gevent-websocket backend: gevent-websocket's handler, as its gunicorn worker
(``-k geventwebsocket.gunicorn.workers.GeventWebSocketWorker``) or
``WSGIServer(..., handler_class=geventwebsocket.handler.WebSocketHandler)`` runs it.

That handler upgrades every websocket request *before* the application runs and hands the
application ``environ['wsgi.websocket']``. This backend adopts that connection: it takes the
bytes the handler's buffered reader already holds (frames a client sent right behind its
handshake), takes the socket over as the gevent backend does, and from then on speaks RFC 6455
itself (``takeover.GeventWebSocket``): gevent-websocket's own close frames drop the status code,
it sends no pings and believes any frame length. Its ``WebSocket`` object is marked closed, so
the handler neither reads the connection again nor writes its broken close frame when the
request ends.

Because the 101 response has already gone out, a refusal (``HandshakeError``) cannot be an HTTP
status any more: ``refuse`` sends it as a close frame, with the code ``CLOSE_CODES`` maps the
status to and the refusal's reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from ..deflate import DeflateParams
from ..exceptions import ConnectionClosed, HandshakeError, ImproperlyConfigured
from ..frames import CloseCode
from .takeover import (
    GeventWebSocket,
    _is_plain_nonblocking,
    _release_reader,
    _take_over,
    take_buffered,
)

logger = logging.getLogger("ws4redis_gevent.backends.geventwebsocket")

# What each refusal becomes once the handler has upgraded (docs/deployment.rst lists them).
CLOSE_CODES: dict[HTTPStatus, CloseCode] = {
    HTTPStatus.BAD_REQUEST: CloseCode.PROTOCOL_ERROR,  # a handshake we would have refused
    HTTPStatus.UPGRADE_REQUIRED: CloseCode.PROTOCOL_ERROR,  # versions 7 and 8: we speak 13
    HTTPStatus.FORBIDDEN: CloseCode.POLICY_VIOLATION,  # origin, WS4REDIS_ALLOWED_CHANNELS...
    HTTPStatus.NOT_FOUND: CloseCode.POLICY_VIOLATION,  # no facility in the URL
    HTTPStatus.SERVICE_UNAVAILABLE: CloseCode.TRY_AGAIN_LATER,  # Redis down, too many
}


def close_code_for(status: HTTPStatus) -> CloseCode:
    """The close code a refusal with HTTP ``status`` becomes after the upgrade (1011 for a
    status not in ``CLOSE_CODES``)."""
    return CLOSE_CODES.get(status, CloseCode.INTERNAL_ERROR)


class GeventWebSocketBackend:
    """Adopts the websockets gevent-websocket's handler has already upgraded."""

    name = "geventwebsocket"

    def accepts(self, environ: Mapping[str, Any]) -> bool:
        return _handler(environ) is not None

    def upgrade(
        self,
        environ: dict[str, Any],
        start_response: Any,
        headers: list[tuple[str, str]],
        max_message_size: int,
        deflate: DeflateParams | None = None,
    ) -> GeventWebSocket:
        """Take the connection over (the handler sent its 101 response already, without
        permessage-deflate: the middleware never negotiates it here, so ``deflate`` is None)."""
        handler = _handler(environ)
        if handler is None:
            raise ImproperlyConfigured("no websocket upgraded by gevent-websocket's handler")
        return _adopt(environ, handler, max_message_size)

    def refuse(self, environ: dict[str, Any], exc: HandshakeError) -> None:
        """Send a refusal after the upgrade: a close frame with ``close_code_for(exc.status)``
        and the reason, then wait briefly for the client's close."""
        handler = _handler(environ)
        if handler is None:
            raise ImproperlyConfigured("no websocket upgraded by gevent-websocket's handler")
        websocket = _adopt(environ, handler, 125)
        try:
            websocket.send_close(close_code_for(exc.status), exc.reason)
        except ConnectionClosed:
            pass
        finally:
            websocket.shutdown(drain=True)


def _handler(environ: Mapping[str, Any]) -> Any:
    # The handler of gevent-websocket's WebSocket in the environ (it holds the socket and the
    # buffered reader), or None when gevent-websocket did not upgrade this request.
    websocket = environ.get("wsgi.websocket")
    handler = getattr(websocket, "handler", None)
    if handler is None or getattr(handler, "socket", None) is None:
        return None
    if not hasattr(getattr(handler, "rfile", None), "read1"):
        return None
    return handler


def _adopt(environ: dict[str, Any], handler: Any, max_message_size: int) -> GeventWebSocket:
    _disarm(environ["wsgi.websocket"])
    sock = handler.socket
    buffered = take_buffered(sock, handler.rfile)
    _release_reader(handler, environ, handler.rfile)
    if _is_plain_nonblocking(sock):
        sock = _take_over(sock)  # the websocket may outlive the request (parked)
    return GeventWebSocket(sock, buffered, max_message_size)


def _disarm(websocket: Any) -> None:
    # gevent-websocket's WebSocket, marked closed: when the request ends its handler skips
    # ``close()`` (which would write an invalid close frame), and nothing of it touches the
    # connection again.
    websocket.closed = True
    for name in ("stream", "raw_read", "raw_write"):
        with contextlib.suppress(AttributeError):
            setattr(websocket, name, None)
