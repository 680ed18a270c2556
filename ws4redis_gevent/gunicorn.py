"""The gunicorn worker: ``gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker app:app``.

gevent's pywsgi under gunicorn, with websockets upgraded by ws4redis_gevent's gevent backend
(gevent-websocket's worker sends broken close frames). On shutdown and graceful restart, every
open websocket is closed with 1001 (going away) so clients reconnect to the next worker.
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from .frames import CloseCode
from .relay import close_all


class WebSocketHandler(PyWSGIHandler):
    """gunicorn's pywsgi handler; it already exposes the socket as ``gunicorn.sock``."""


class GeventWebSocketWorker(GeventPyWSGIWorker):
    """A gunicorn gevent worker that serves ws4redis_gevent websockets."""

    wsgi_handler = WebSocketHandler

    def handle_quit(self, sig: int, frame: Any) -> None:
        gevent.spawn(close_all, CloseCode.GOING_AWAY, "server shutting down")
        super().handle_quit(sig, frame)

    def handle_exit(self, sig: int, frame: Any) -> None:
        gevent.spawn(close_all, CloseCode.GOING_AWAY, "server restarting")
        super().handle_exit(sig, frame)
