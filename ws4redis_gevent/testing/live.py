"""A live server for integration tests: the application, with websockets, under gevent, in the
test process.

``LiveServer(app).start()`` serves ``app`` (its ``WebsocketMiddleware``, or the app wrapped in
one) with gevent's pywsgi and this library's websocket handler on a free loopback port, in a
greenlet of the test process, with a real Redis (``RedisServer``: embedded unless a URL is
given). Why in the test process: Django's tests then share the test database with the server,
as ``LiveServerTestCase`` does (see ``ws4redis_gevent.testing.django``).

The process is monkey-patched by gevent when the first live server starts (never before), so
that the test's blocking calls (the websocket client's reads, ``time.sleep``, HTTP requests)
let the server's greenlets run. That lasts until the process ends.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .client import DEFAULT_TIMEOUT, WebsocketClient
from .redis_server import RedisServer

WSGIApp = Callable[..., Any]
CLOSE_WAIT = 2.0  # seconds websockets get to finish their closing handshake at stop


def patch_process() -> bool:
    """Monkey-patch this process with gevent, once; True when it was patched just now.

    It comes late (pytest, ssl and redis-py were imported before): gevent's warning about
    that is silenced, since the tests talk to the server over plain loopback sockets.
    """
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)
        monkey.patch_all()
    return True


def websocket_middlewares(app: Any, depth: int = 8) -> Iterator[Any]:
    """The ``WebsocketMiddleware`` instances in ``app`` and the apps it wraps (``app``,
    ``application`` or ``wsgi_app`` attributes, as whitenoise and staticfiles keep them)."""
    from ..middleware import WebsocketMiddleware

    seen: set[int] = set()
    for _ in range(depth):
        if app is None or id(app) in seen:
            return
        seen.add(id(app))
        if isinstance(app, WebsocketMiddleware):
            yield app
        app = next(
            (getattr(app, name) for name in ("app", "application", "wsgi_app")
             if getattr(app, name, None) is not None),
            None,
        )  # fmt: skip


class LiveServer:
    """``app`` served with websockets on a free port of 127.0.0.1, until ``stop``.

    Args:
        app: the WSGI application; the ``WebsocketMiddleware`` it contains reads its settings
            again, with this server's Redis (and ``options``); an app without one is wrapped in
            a new one.
        redis: the Redis to use; default: a new embedded ``redis-server``, stopped with the
            server. WS4REDIS_CONNECTION from the settings is never used unless given here.
        options: middleware options (``heartbeat``, ``allowed_channels``...) for this server.

    Attributes:
        url: ``http://127.0.0.1:PORT``; ``ws_url`` the same with ``ws://``.
    """

    def __init__(self, app: WSGIApp, redis: RedisServer | None = None, **options: Any) -> None:
        self.app = app
        self.owns_redis = redis is None
        self.redis = redis or RedisServer()
        self.options = options
        self.port = 0
        self._server: Any = None
        self._saved_options: dict[str, Any] = {}
        self._reloaded: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def heartbeat(self) -> str | None:
        from .. import settings

        return settings.load().heartbeat

    def start(self) -> LiveServer:
        """Patch the process (first time), start Redis, build the app, listen."""
        patch_process()
        from gevent import pywsgi

        from ..backends.gevent import WebSocketHandler

        self.redis.start()
        self._configure()
        try:
            server = pywsgi.WSGIServer(
                ("127.0.0.1", 0), self._application(), handler_class=WebSocketHandler, log=None
            )
            server.start()
        except BaseException:
            self._restore()
            raise
        self._server = server
        self.port = server.server_port
        return self

    def _configure(self) -> None:
        from .. import settings

        self._saved_options = dict(settings._configured)
        settings.configure(**{**self.options, "connection": self.redis.url})

    def _application(self) -> WSGIApp:
        from ..middleware import WebsocketMiddleware

        found = list(websocket_middlewares(self.app))
        for middleware in found:
            # Built when wsgi.py was imported, with the settings of then: read again with
            # this server's Redis (and again at stop, with the settings restored).
            middleware.reload_settings()
        self._reloaded = found
        return self.app if found else WebsocketMiddleware(self.app)

    def connect(
        self, path: str, cookies: Any = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> WebsocketClient:
        """A ``WebsocketClient`` to ``path`` (e.g. ``/ws/chat?subscribe-broadcast``); the
        heartbeat setting is passed on, so ``recv`` skips heartbeats.

        Raises:
            HandshakeRefused: the server answered with an HTTP status.
        """
        kwargs.setdefault("heartbeat", self.heartbeat)
        return WebsocketClient(self.ws_url + path, cookies=cookies, timeout=timeout, **kwargs)

    def flush_redis(self) -> None:
        """Empty the embedded Redis (stored messages of earlier tests)."""
        self.redis.flush()

    def stop(self) -> None:
        """Close the websockets (1001), stop listening, restore the settings, stop Redis."""
        if self._server is None:
            return
        from .. import hubs, redis_store, relay

        if relay.close_all():
            deadline = time.monotonic() + CLOSE_WAIT
            while relay.live_relays() and time.monotonic() < deadline:
                time.sleep(0.02)  # gevent's: the relays finish their closing handshakes
        self._server.stop(timeout=CLOSE_WAIT)
        self._server = None
        hubs.close_hubs()
        redis_store.forget_connection(self.redis.url)
        self._restore()

    def _restore(self) -> None:
        """The settings and middlewares as they were before ``start``; Redis stopped if ours."""
        from .. import settings

        settings.reset()
        settings.configure(**self._saved_options)
        for middleware in self._reloaded:
            middleware.reload_settings()
        self._reloaded = []
        if self.owns_redis:
            self.redis.stop()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LiveServer {self.url if self._server else '(stopped)'} redis={self.redis}>"
