"""Backends: how a request is upgraded, and how its websocket receives and sends.

A backend imports its library (gevent's pywsgi, geventwebsocket, uwsgi) only inside its own
module; backends share ``takeover`` (the RFC 6455 websocket on a taken-over socket), never each
other. The relay loop in ``ws4redis_gevent.relay`` is written once against the ``WebSocket``
interface and its optional capabilities, which the core declares in ``ws4redis_gevent.transport``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol, cast

from ..deflate import DeflateParams
from ..exceptions import HandshakeError
from ..transport import WebSocket


class Backend(Protocol):
    name: str

    def accepts(self, environ: Mapping[str, Any]) -> bool:
        """Tell whether this backend can upgrade requests served like this one."""
        ...

    def upgrade(
        self,
        environ: dict[str, Any],
        start_response: Any,
        headers: list[tuple[str, str]],
        max_message_size: int,
        deflate: DeflateParams | None = None,
    ) -> WebSocket:
        """Send the 101 response with ``headers`` and return the websocket; with ``deflate``
        (permessage-deflate negotiated), it decompresses what the client compressed."""
        ...


class UpgradedBackend(Backend, Protocol):
    """A backend whose server upgrades before the application runs (gevent-websocket's
    handler): refusals are then close frames."""

    def refuse(self, environ: dict[str, Any], exc: HandshakeError) -> None:
        """Send ``exc`` as a close frame on the already upgraded connection."""
        ...


# The backends WS4REDIS_BACKEND may name; any other value is the dotted path of a backend class.
BACKENDS = {
    "uwsgi": "ws4redis_gevent.backends.uwsgi.UwsgiBackend",
    "geventwebsocket": "ws4redis_gevent.backends.geventwebsocket.GeventWebSocketBackend",
    "gevent": "ws4redis_gevent.backends.gevent.GeventBackend",
}
_UNSET: Any = object()


def select_backend(environ: Mapping[str, Any], choice: str | None = _UNSET) -> Backend | None:
    """The backend able to serve this request, or None when the server cannot upgrade.

    ``choice`` is the WS4REDIS_BACKEND setting (read from the settings when not given): None
    picks the first backend of BACKENDS that accepts the request (uWSGI is recognised by its
    environ, gevent-websocket's handler by its ``wsgi.websocket``, gevent's pywsgi and
    gunicorn's gevent workers by theirs); a name or dotted path
    picks that backend, which must accept the request.
    """
    if choice is _UNSET:
        from ..settings import load

        choice = load().backend
    names = [choice] if choice else list(BACKENDS)
    for name in names:
        backend = load_backend(name)
        if backend.accepts(environ):
            return backend
    return None


@functools.cache
def load_backend(name: str) -> Backend:
    """The backend called ``name`` in BACKENDS, or the class at dotted path ``name``."""
    from ..settings import import_string

    return import_string(BACKENDS.get(name, name))()


def refuse_after_upgrade(environ: dict[str, Any], exc: HandshakeError) -> bool:
    """When the server upgraded this request before the application ran (gevent-websocket's
    handler puts its websocket in ``environ['wsgi.websocket']``), send the refusal as a close
    frame and return True; else return False: the refusal is an HTTP response."""
    if environ.get("wsgi.websocket") is None:
        return False
    backend = load_backend(UPGRADED_BY_SERVER)
    if not backend.accepts(environ):
        return False
    cast(UpgradedBackend, backend).refuse(environ, exc)
    return True


UPGRADED_BY_SERVER = "geventwebsocket"


__all__ = [
    "BACKENDS",
    "Backend",
    "UpgradedBackend",
    "WebSocket",
    "load_backend",
    "refuse_after_upgrade",
    "select_backend",
]
