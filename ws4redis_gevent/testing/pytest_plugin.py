"""The pytest plugin of ws4redis-gevent (entry point ``pytest11``): fixtures for users' tests.

Fixtures:
    ``ws4redis_capture``: a ``PublishCapture`` active during the test (no Redis server).
    ``ws4redis_live_server``: the application served with websockets (``LiveServer``), started
        once per session, its embedded Redis emptied before each test. Under pytest-django it
        is the project's WSGI_APPLICATION and the test gets ``transactional_db``.
    ``ws4redis_connect``: ``connect(path, cookies=None, **kwargs)`` opens a ``WebsocketClient``
        on the live server, closed at the end of the test.
    ``ws4redis_redis``: the live server's Redis (``RedisServer``).
    ``ws4redis_wsgi_app``: the application served; override it, or set the ini option
        ``ws4redis_wsgi_app = package.module:application``.

Options: ``--ws4redis-redis-url`` (ini ``ws4redis_redis_url``, environment variable
WS4REDIS_TEST_REDIS_URL): a Redis to use instead of the embedded one (``settings``:
WS4REDIS_CONNECTION of the Django settings). There is no default.

Loading this plugin imports neither Django nor gevent and patches nothing: the live server
monkey-patches the process when a test first uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .. import integration


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ws4redis", "ws4redis-gevent live server")
    group.addoption(
        "--ws4redis-redis-url",
        dest="ws4redis_redis_url",
        default=None,
        help="Redis URL for the live server instead of an embedded redis-server "
        "('settings': the Django setting WS4REDIS_CONNECTION)",
    )
    parser.addini("ws4redis_redis_url", "see --ws4redis-redis-url", default=None)
    parser.addini(
        "ws4redis_wsgi_app",
        "the WSGI application the live server serves (module:attribute); default under "
        "Django: WSGI_APPLICATION",
        default=None,
    )


def _framework_tools() -> Any:
    """The testing module of the framework in use (Django's, once its app is ready), or None."""
    framework = integration.current()
    if framework is None or framework.testing is None:
        return None
    return importlib.import_module(framework.testing)


def _uses_django() -> bool:
    framework = integration.current()
    return framework is not None and framework.name == "django"


@pytest.fixture
def ws4redis_capture() -> Iterator[Any]:
    """What the test publishes, recorded with no Redis server (a ``PublishCapture``)."""
    from .capture import PublishCapture

    with PublishCapture() as capture:
        yield capture


@pytest.fixture(scope="session")
def ws4redis_redis(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The live server's Redis: embedded, unless a URL was given (never a default one)."""
    from .redis_server import given_url

    url = (
        pytestconfig.getoption("ws4redis_redis_url")
        or pytestconfig.getini("ws4redis_redis_url")
        or given_url()
    )
    tools = _framework_tools()
    if url == "settings":
        if tools is None:
            raise pytest.UsageError("ws4redis redis URL 'settings' needs Django's settings")
        server = tools.redis_for("settings")
    else:
        from .redis_server import RedisServer

        server = RedisServer(url=url or None)
    with server:
        yield server


@pytest.fixture(scope="session")
def ws4redis_wsgi_app(pytestconfig: pytest.Config) -> Any:
    """The application to serve: the ini option ``ws4redis_wsgi_app``, else Django's."""
    dotted = pytestconfig.getini("ws4redis_wsgi_app")
    if dotted:
        module, _, attribute = dotted.partition(":")
        return getattr(importlib.import_module(module), attribute or "application")
    if _uses_django():
        return None  # DjangoLiveServer takes WSGI_APPLICATION
    raise pytest.UsageError(
        "ws4redis_live_server: set the ini option ws4redis_wsgi_app = module:application, "
        "override the fixture ws4redis_wsgi_app, or configure Django (pytest-django)"
    )


@pytest.fixture(scope="session")
def _ws4redis_live_server(ws4redis_wsgi_app: Any, ws4redis_redis: Any) -> Iterator[Any]:
    server: Any
    tools = _framework_tools()
    if tools is not None:
        server = tools.live_server(ws4redis_wsgi_app, ws4redis_redis)
    else:
        from .live import LiveServer

        server = LiveServer(ws4redis_wsgi_app, ws4redis_redis)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ws4redis_live_server(request: pytest.FixtureRequest) -> Any:
    """The application served with websockets (``LiveServer``); see the module docstring."""
    if _uses_django() and request.config.pluginmanager.hasplugin("django"):
        # As pytest-django's live_server: the server's connections see committed data only.
        request.getfixturevalue("transactional_db")
    server = request.getfixturevalue("_ws4redis_live_server")
    if server.redis.embedded:
        server.flush_redis()
    return server


@pytest.fixture
def ws4redis_connect(ws4redis_live_server: Any) -> Iterator[Callable[..., Any]]:
    """``connect(path, cookies=None, **kwargs)``: a ``WebsocketClient`` on the live server,
    closed after the test."""
    opened: list[Any] = []

    def connect(path: str, cookies: Any = None, **kwargs: Any) -> Any:
        client = ws4redis_live_server.connect(path, cookies=cookies, **kwargs)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.__exit__(None, None, None)
