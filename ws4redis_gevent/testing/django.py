"""The Django side of the test tools: test case mixins and the live server for a Django project.

- ``PublishCaptureMixin``: ``self.published``, a ``PublishCapture`` active during each test
  (for ``SimpleTestCase``, ``TestCase``...; no Redis server).
- ``LiveWebsocketTestCase`` (and ``LiveWebsocketMixin``): the project's WSGI application
  served with websockets for the test class, like ``LiveServerTestCase``.
- ``DjangoLiveServer``: the server itself, which the pytest plugin uses too.

The database: the server runs in greenlets of the test process, each with its own database
connections, as ``LiveServerTestCase``'s server thread has. So, as there, data a test writes
must be committed to be seen by the server: the live test case is a ``TransactionTestCase``
(pytest: the fixture asks for ``transactional_db``). An in-memory SQLite test database (a
SQLite project's default) is shared with the server's greenlets, as ``LiveServerTestCase``
does, since another connection would see another, empty, database.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import TestCase, TransactionTestCase, modify_settings

from .capture import PublishCapture
from .client import DEFAULT_TIMEOUT, WebsocketClient
from .live import LiveServer, WSGIApp, patch_process
from .redis_server import RedisServer, given_url

SETTINGS_CONNECTION = "settings"  # ws4redis_redis_url's value to opt in to WS4REDIS_CONNECTION


def patch_for_django() -> None:
    """Monkey-patch the process (once) without losing the test's database connections.

    Django keeps connections in a thread-local made before the patch, which every greenlet of
    the main thread would share: it is replaced by a greenlet-local one (each server greenlet
    gets connections of its own), and the test's connections are put back into it for the main
    greenlet, marked as belonging to it (the patch changed what a thread id is).
    """
    import _thread

    from asgiref.local import Local

    existing = list(connections.all(initialized_only=True))
    if not patch_process():
        return
    connections._connections = Local(connections.thread_critical)
    for connection in existing:
        connections[connection.alias] = connection
        connection._thread_ident = _thread.get_ident()


def redis_for(redis_url: str | None) -> RedisServer:
    """The live server's Redis: ``redis_url``, else WS4REDIS_TEST_REDIS_URL, else embedded; the
    value ``"settings"`` opts in to WS4REDIS_CONNECTION (never used without it).

    Raises:
        ImproperlyConfigured: ``"settings"`` with no WS4REDIS_CONNECTION.
    """
    if redis_url is None:
        redis_url = given_url()
    if redis_url is None:
        return RedisServer()
    if redis_url == SETTINGS_CONNECTION:
        from django.conf import settings

        connection = getattr(settings, "WS4REDIS_CONNECTION", None)
        if not isinstance(connection, str) or not connection:
            raise ImproperlyConfigured(
                "ws4redis_redis_url = 'settings' needs WS4REDIS_CONNECTION as a URL"
            )
        return RedisServer(url=connection)
    return RedisServer(url=redis_url)


class DjangoLiveServer(LiveServer):
    """The project's WSGI application (WSGI_APPLICATION) served with websockets.

    While it runs, ``127.0.0.1`` is added to ALLOWED_HOSTS (as ``LiveServerTestCase`` does),
    and in-memory SQLite connections are shared with the server's greenlets. With
    ``django.contrib.staticfiles``, static files are served too (as
    ``StaticLiveServerTestCase`` does).
    """

    def __init__(
        self, app: WSGIApp | None = None, redis: RedisServer | None = None, **options: Any
    ) -> None:
        if app is None:
            from django.core.servers.basehttp import get_internal_wsgi_application

            app = get_internal_wsgi_application()
        super().__init__(app, redis, **options)
        self._shared: dict[str, Any] = {}
        self._hosts: Any = None

    def start(self) -> DjangoLiveServer:
        patch_for_django()
        self._shared = {
            c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()
        }
        for connection in self._shared.values():
            connection.inc_thread_sharing()
        self._hosts = modify_settings(ALLOWED_HOSTS={"append": "127.0.0.1"})
        self._hosts.enable()
        try:
            super().start()
        except BaseException:
            self._release()
            raise
        return self

    def _application(self) -> WSGIApp:
        app = super()._application()
        from django.apps import apps

        if apps.is_installed("django.contrib.staticfiles"):
            # Static files found by the finders, as StaticLiveServerTestCase serves them: a
            # page under test loads its scripts (ws4redis.js) from this server.
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            app = StaticFilesHandler(app)
        if not self._shared:
            return app
        shared = self._shared

        def sharing_connections(environ: dict[str, Any], start_response: Any) -> Any:
            for alias, connection in shared.items():
                connections[alias] = connection
            return app(environ, start_response)

        return sharing_connections

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._release()

    def _release(self) -> None:
        for connection in self._shared.values():
            connection.dec_thread_sharing()
        self._shared = {}
        if self._hosts is not None:
            self._hosts.disable()
            self._hosts = None


class PublishCaptureMixin:
    """For Django test cases: ``self.published`` records what each test publishes
    (``PublishCapture``); no Redis server is used or reached."""

    published: PublishCapture

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.published = PublishCapture().start()
        self.addCleanup(self.published.stop)  # type: ignore[attr-defined]


class LiveWebsocketMixin:
    """For ``TransactionTestCase``: the project served with websockets for the test class.

    Attributes:
        ws4redis_redis_url: None (default) for an embedded redis-server (or the URL in
            WS4REDIS_TEST_REDIS_URL); a URL to use that Redis instead; ``"settings"`` to use
            WS4REDIS_CONNECTION (opt-in only).
        ws4redis_options: middleware options for the server (``heartbeat``...).
        live_server: the running ``DjangoLiveServer`` (``live_server_url`` is its URL).
    """

    ws4redis_redis_url: str | None = None
    ws4redis_options: dict[str, Any] = {}
    live_server: DjangoLiveServer

    @classmethod
    def setUpClass(cls) -> None:
        if issubclass(cls, TestCase):
            raise ImproperlyConfigured(
                f"{cls.__name__}: the live server cannot see a TestCase's uncommitted data; "
                "use LiveWebsocketTestCase (a TransactionTestCase), as for LiveServerTestCase"
            )
        super().setUpClass()  # type: ignore[misc]
        server = DjangoLiveServer(redis=redis_for(cls.ws4redis_redis_url), **cls.ws4redis_options)
        cls.live_server = server.start()
        cls.addClassCleanup(server.stop)  # type: ignore[attr-defined]

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        if self.live_server.redis.embedded:
            self.live_server.flush_redis()  # no stored message of an earlier test

    @property
    def live_server_url(self) -> str:
        return self.live_server.url

    def connect(
        self, path: str, client: Any = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> WebsocketClient:
        """A websocket to ``path`` with the cookies of ``client`` (default: ``self.client``,
        so ``self.client.force_login(user)`` opens the websocket as that user); closed at the
        end of the test."""
        client = client if client is not None else self.client  # type: ignore[attr-defined]
        websocket = self.live_server.connect(
            path, cookies=client.cookies, timeout=timeout, **kwargs
        )
        self.addCleanup(websocket.__exit__, None, None, None)  # type: ignore[attr-defined]
        return websocket


class LiveWebsocketTestCase(LiveWebsocketMixin, TransactionTestCase):
    """``TransactionTestCase`` with the project served with websockets (``self.connect``)."""


# What the pytest plugin asks of a framework's testing module (integration.Integration.testing).
live_server = DjangoLiveServer
