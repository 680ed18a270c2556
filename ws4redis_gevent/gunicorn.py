"""The gunicorn worker: ``gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker app:app``.

gevent's pywsgi under gunicorn, with websockets upgraded by ws4redis_gevent's gevent backend
(gevent-websocket's worker sends broken close frames). On shutdown and graceful restart, every
open websocket is closed with 1001 (going away) so clients reconnect to the next worker.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import gevent
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from .backends.gevent import HandshakeDeadlineMixin, LeanRequestMixin
from .frames import CloseCode

# gunicorn's master imports this module to find the worker class, and the worker
# monkey-patches only later (in init_process): nothing imported here may import redis, which
# imports ssl and would make gevent warn (MonkeyPatchWarning naming redis.asyncio.connection).
# The relay (and through it the hub and redis) is imported when the worker needs it.


class WebSocketHandler(HandshakeDeadlineMixin, LeanRequestMixin, PyWSGIHandler):
    """gunicorn's pywsgi handler (it exposes the socket as ``gunicorn.sock``), with the
    handshake deadline (WS4REDIS_HANDSHAKE_TIMEOUT: pywsgi has none, so a client sending a
    request slowly would hold a connection forever), request headers read by
    ``RequestHeaders``, and no access log entry built when none is written. An idle
    kept-alive connection waits for its next request with no deadline, as under gunicorn's
    pywsgi handler."""

    deadline_while_idle = False

    def log_request(self) -> None:
        log = self.server.log  # gunicorn's logger (in pywsgi's adapter, which passes through)
        # gunicorn's Logger writes no access log unless configured to; a logger class that
        # overrides access() decides for itself.
        access = getattr(log.access, "__func__", None)
        if access is Logger.access and getattr(log, "access_log_enabled", True) is False:
            return
        if self.environ is None:
            # Answered before the request was read whole (400, 408, 414): gunicorn's entry
            # needs an environ; it gets what is known (the mixin resets these per request).
            address = self.client_address
            self.environ = {
                "REQUEST_METHOD": self.command or "-",
                "RAW_URI": self.path or "-",
                "SERVER_PROTOCOL": self.request_version or "-",
                "REMOTE_ADDR": address[0] if isinstance(address, tuple) else "-",
            }
        if self.response_headers is None:  # unset for such answers too
            self.response_headers = []
        super().log_request()


class GeventWebSocketWorker(GeventPyWSGIWorker):
    """A gunicorn gevent worker that serves ws4redis_gevent websockets."""

    wsgi_handler = WebSocketHandler

    #: Move the objects that exist once the application is loaded (modules, classes, settings:
    #: tens of thousands under Django) out of the cyclic garbage collector's reach before
    #: serving (``gc.freeze``), so that its full collections, which every few hundred
    #: handshakes would walk them all, only visit what requests and websockets create. Set to
    #: False in a subclass to keep them collectable.
    freeze_gc = True

    def run(self) -> None:
        if self.freeze_gc:
            if not self.cfg.preload_app:
                # What is garbage already is collected, not frozen. (With --preload the
                # objects came from the master: a collection here would write to all their
                # pages, which the workers share until then; freezing only moves lists.)
                gc.collect()
            gc.freeze()
        super().run()
        # Idle websockets are served outside gunicorn's pool (no greenlet while idle), so
        # gunicorn does not wait for them: they get the graceful timeout to finish the closing
        # handshakes close_all started when the signal came.
        from .relay import live_relays

        deadline = time.monotonic() + self.cfg.graceful_timeout
        while live_relays() and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def handle_quit(self, sig: int, frame: Any) -> None:
        gevent.spawn(_close_all, "server shutting down")
        super().handle_quit(sig, frame)

    def handle_exit(self, sig: int, frame: Any) -> None:
        gevent.spawn(_close_all, "server restarting")
        super().handle_exit(sig, frame)


def _close_all(reason: str) -> None:
    from .relay import close_all

    close_all(CloseCode.GOING_AWAY, reason)
