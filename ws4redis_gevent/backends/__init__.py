"""Backends: how a request is upgraded, and how its websocket receives and sends.

A backend imports its library (gevent's pywsgi, uwsgi) only inside its own module. The relay loop
in ``ws4redis_gevent.relay`` is written once against the ``WebSocket`` interface and its optional
capabilities, which the core declares in ``ws4redis_gevent.transport``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol

from ..deflate import DeflateParams
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


# The backends WS4REDIS_BACKEND may name; any other value is the dotted path of a backend class.
BACKENDS = {
    "uwsgi": "ws4redis_gevent.backends.uwsgi.UwsgiBackend",
    "gevent": "ws4redis_gevent.backends.gevent.GeventBackend",
}
_UNSET: Any = object()


def select_backend(environ: Mapping[str, Any], choice: str | None = _UNSET) -> Backend | None:
    """The backend able to serve this request, or None when the server cannot upgrade.

    ``choice`` is the WS4REDIS_BACKEND setting (read from the settings when not given): None
    picks the first backend of BACKENDS that accepts the request (uWSGI is recognised by its
    environ, gevent's pywsgi and gunicorn's gevent workers by theirs); a name or dotted path
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


__all__ = ["BACKENDS", "Backend", "WebSocket", "load_backend", "select_backend"]
