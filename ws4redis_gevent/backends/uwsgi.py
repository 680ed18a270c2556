"""The uWSGI backend: uWSGI's gevent loop (``--gevent N``), behind its http router (``--http``),
as an HTTP server (``--http-socket``) or behind nginx (``--socket`` with ``uwsgi_pass``).

uWSGI's own websocket API does not fit the relay, and loses information on the way:

- ``uwsgi.websocket_*`` may only be called from the request's own greenlet ("you can call uwsgi
  api function only from the main callable"), but the relay sends from a writer greenlet and the
  hub writes fan-out messages from its own;
- ``websocket_recv`` cannot tell text from binary, returns ``b'\\x00'`` for a non-final fragment
  (indistinguishable from a one-byte NUL message), answers pings with empty pongs, replies to a
  close without a status code, and drops a connection that exceeds ``--websockets-max-size``
  without a 1009 close frame.

So uWSGI only runs the request: the middleware's 101 response goes out through
``start_response``, then this backend takes over the connection's socket
(``uwsgi.connection_fd()``, duplicated) and speaks RFC 6455 on it with the same code as the
gevent backend. uWSGI does not touch the connection while the application runs (it only reads a
request body, or websocket frames, when asked to), and closes its own descriptor when the
application returns, after the relay has shut the connection down.

``tests/test_uwsgi_native_api.py`` shows each limit of the native API listed above.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.socket

from ..deflate import DeflateParams
from ..exceptions import ImproperlyConfigured
from .takeover import GeventWebSocket

logger = logging.getLogger("ws4redis_gevent.backends.uwsgi")
_going_away_installed = False


class UwsgiWebSocket(GeventWebSocket):
    """A websocket on the socket of a uWSGI request, taken over after the 101 response (uWSGI
    has read nothing beyond the handshake from it)."""

    def __init__(
        self, sock: Any, max_message_size: int, deflate: DeflateParams | None = None
    ) -> None:
        super().__init__(sock, b"", max_message_size, deflate)


class UwsgiBackend:
    """Upgrades requests served by uWSGI running its gevent loop."""

    name = "uwsgi"

    def accepts(self, environ: Mapping[str, Any]) -> bool:
        """Under uWSGI running its gevent loop in a monkey-patched process: anything else would
        block the whole worker for the websocket's life (logged, and answered 501)."""
        if "uwsgi.version" not in environ:
            return False
        uwsgi = _uwsgi()
        if uwsgi is None:
            return False
        problem = gevent_loop_problem(uwsgi)
        if problem is not None:
            logger.error("cannot serve websockets: %s", problem)
            return False
        return True

    def upgrade(
        self,
        environ: dict[str, Any],
        start_response: Any,
        headers: list[tuple[str, str]],
        max_message_size: int,
        deflate: DeflateParams | None = None,
    ) -> UwsgiWebSocket:
        uwsgi = _uwsgi()
        if uwsgi is None:
            raise ImproperlyConfigured("the uwsgi backend only runs inside uWSGI")
        write = start_response("101 Switching Protocols", headers)
        write(b"")  # uWSGI sends the status line and headers now
        # A duplicate, so that uWSGI closes its own descriptor at the end of the request and
        # ours is ours to close.
        sock = gevent.socket.socket(fileno=os.dup(uwsgi.connection_fd()))
        install_going_away()
        return UwsgiWebSocket(sock, max_message_size, deflate)


def gevent_loop_problem(uwsgi: Any) -> str | None:
    """Why this uWSGI process cannot hold websockets open, or None when it can.

    It needs uWSGI's gevent loop (``--gevent N``) and the standard library monkey-patched
    (``--gevent-early-monkey-patch``): without them Redis and the relay's timers would block
    every other request of the worker.
    """
    from gevent import monkey

    loop = uwsgi.loop.decode() if isinstance(uwsgi.loop, bytes) else uwsgi.loop
    if loop != "gevent":
        return (
            f"uWSGI runs the {loop or 'default'} loop: start it with "
            "--gevent N --gevent-early-monkey-patch"
        )
    if not monkey.is_module_patched("socket"):
        return (
            "the process is not monkey-patched: start uWSGI with --gevent-early-monkey-patch "
            "(or call gevent.monkey.patch_all() first thing in the WSGI module)"
        )
    return None


def install_going_away() -> None:
    """Close every websocket with 1001 when the worker stops or reloads.

    On a graceful reload (SIGHUP to the worker), uWSGI's gevent loop waits for running
    requests (up to ``--worker-reload-mercy``): closing the websockets lets the worker go at
    once and tells clients to reconnect. libev runs every watcher of a signal, so uWSGI's own
    SIGHUP handler still runs.

    On SIGTERM or SIGINT (``--die-on-term``: what systemd sends; the master passes SIGINT to
    the workers), uWSGI's gevent loop stops at once, then calls ``uwsgi.atexit`` in the main
    greenlet, with the event loop still usable, before exiting: there the websockets get their
    1001 close frames, and up to ``EXIT_CLOSE_WAIT`` seconds for the clients' answers. A
    ``uwsgi.atexit`` the application set is kept and called afterwards.
    """
    global _going_away_installed
    if _going_away_installed:
        return
    _going_away_installed = True
    gevent.signal_handler(signal.SIGHUP, _close_all_going_away)
    uwsgi = _uwsgi()
    if uwsgi is not None:
        previous = getattr(uwsgi, "atexit", None)
        uwsgi.atexit = functools.partial(_close_all_at_exit, previous)


EXIT_CLOSE_WAIT = 1.0


def _close_all_going_away() -> None:
    from ..frames import CloseCode
    from ..lifecycle import close_all

    gevent.spawn(close_all, CloseCode.GOING_AWAY, "server restarting or stopping")


def _close_all_at_exit(previous: Callable[[], Any] | None) -> None:
    from ..frames import CloseCode
    from ..lifecycle import close_all, live_relays

    try:
        if close_all(CloseCode.GOING_AWAY, "server stopping"):
            deadline = time.monotonic() + EXIT_CLOSE_WAIT
            while live_relays() and time.monotonic() < deadline:
                gevent.sleep(0.02)
    except Exception:  # the worker exits anyway: say why the close frames may be missing
        logger.exception("closing websockets at exit failed")
    finally:
        if previous is not None:
            previous()


def _uwsgi() -> Any:
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi
