"""middleware.py: routing and every refusal before the upgrade, called as a WSGI app (pure
units: no server, no Redis; the refusals below all come before anything touches Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from ws4redis_gevent.middleware import WebsocketMiddleware
from ws4redis_gevent.settings import reset


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"from the app"]


def handshake(path: str, **extra: str) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "subscribe-broadcast",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    environ.update(extra)
    return environ


def call(middleware: WebsocketMiddleware, environ: dict[str, Any]) -> tuple[str, bytes]:
    seen: list[str] = []
    body = b"".join(middleware(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


@pytest.fixture
def middleware() -> Any:
    made: list[WebsocketMiddleware] = []

    def make(**options: Any) -> WebsocketMiddleware:
        made.append(WebsocketMiddleware(app, connection="redis://127.0.0.1:1/0", **options))
        return made[-1]

    yield make
    reset()


def test_other_paths_reach_the_app(middleware) -> None:
    assert call(middleware(), {"PATH_INFO": "/page", "REQUEST_METHOD": "GET"}) == (
        "200 OK",
        b"from the app",
    )


def test_plain_http_under_the_prefix_gets_426(middleware) -> None:
    status, body = call(middleware(), {"PATH_INFO": "/ws/chat", "REQUEST_METHOD": "GET"})
    assert status.startswith("426") and b"websockets only" in body


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/ws/", "404", b"no facility"),
        ("/ws/" + "x" * 129, "400", b"longer than 128"),
        ("/ws/a\x00b", "400", b"control characters"),
        ("/ws/\xff", "400", b"not valid UTF-8"),
    ],
)
def test_bad_facilities_are_refused_with_a_reason(middleware, path, status, reason) -> None:
    got, body = call(middleware(), handshake(path))
    assert got.startswith(status) and reason in body


def test_facility_length_is_a_setting(middleware) -> None:
    got, _ = call(middleware(max_facility_length=3), handshake("/ws/four"))
    assert got.startswith("400")


def test_unlisted_facilities_get_404(middleware) -> None:
    got, body = call(middleware(facilities=["chat", "room-*"]), handshake("/ws/other"))
    assert got.startswith("404") and b"unknown facility" in body


def test_too_many_websockets_get_503(middleware) -> None:
    from ws4redis_gevent import middleware as module

    limited = middleware(max_connections=1)
    module._websockets.count += 1  # one websocket already open
    try:
        got, _ = call(limited, handshake("/ws/chat"))
    finally:
        module._websockets.count -= 1
    assert got.startswith("503")


def test_reload_settings_reads_the_settings_again():
    """Settings are read when the middleware is built; reload_settings reads them again (the
    test tools' live server points a project's middleware at its own Redis that way)."""
    from ws4redis_gevent.settings import configure

    reset()
    try:
        middleware = WebsocketMiddleware(app, websocket_url="/ws/")
        configure(websocket_url="/live/", connection="redis://127.0.0.1:1/0")
        assert middleware.prefix == "/ws/"
        middleware.reload_settings()
        assert (middleware.prefix, middleware.settings.connection) == (
            "/live/", "redis://127.0.0.1:1/0"
        )
        assert call(middleware, handshake("/ws/chat"))[1] == b"from the app"
    finally:
        reset()
