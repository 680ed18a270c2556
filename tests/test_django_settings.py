"""Django settings honoured by the middleware, the publisher and the context processor.

WS4REDIS_ALLOWED_CHANNELS, WS4REDIS_PREFIX, WEBSOCKET_URL and WS4REDIS_HEARTBEAT come from
Django's settings, read when the middleware (or publisher, or context) is built; fetch_message
answers through a view with the newest message among the request's audiences.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

FACILITY = "board"


def publish(redis_url: str, message: str, prefix: str | None = None, **audiences: object) -> None:
    settings = Settings(connection=redis_url, prefix=prefix)
    RedisPublisher(facility=FACILITY, settings=settings, **audiences).publish_message(message)


# -- WS4REDIS_ALLOWED_CHANNELS ------------------------------------------------------------

DENY_ANONYMOUS = {"WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.deny_anonymous"}


def test_allowed_channels_permission_denied_refuses_with_403(
    start_django_server, browser, redis_url
):
    """The doc's callback raising PermissionDenied for anonymous users (given as a dotted
    path in Django's settings) refuses the handshake with 403; logged-in users get through."""
    server = start_django_server(settings=DENY_ANONYMOUS)
    with pytest.raises(InvalidStatus) as refused:
        browser(server).connect(f"/ws/{FACILITY}?subscribe-broadcast")
    assert refused.value.response.status_code == 403
    assert server.stats()["channels"] == {}  # refused before subscribing

    john = browser(server, "john")
    with john.connect(f"/ws/{FACILITY}?subscribe-broadcast&subscribe-user") as ws:
        publish(redis_url, "welcome", users=["john"])
        assert ws.recv(timeout=5) == "welcome"


def test_doc_callback_calls_is_authenticated_with_parentheses(browser, start_django_server):
    """``request.user.is_authenticated()`` (Django < 2.0 style, as in the ws4redis doc) works on
    the request the middleware builds, for a logged-in user and an anonymous one."""
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    from tests.django_project.allowed import deny_anonymous
    from ws4redis_gevent.django_request import make_request, process_request

    john = browser(start_django_server(), "john")

    def websocket_request(cookie: str | None):
        headers = {"HTTP_COOKIE": cookie} if cookie else {}
        request = make_request(RequestFactory().get(f"/ws/{FACILITY}", **headers).environ, FACILITY)
        process_request(request)
        return request

    logged_in = websocket_request(john.cookie_header)
    assert logged_in.user.is_authenticated() is True
    assert logged_in.user.is_authenticated  # and still a property, as Django >= 2.0 has it
    assert deny_anonymous(logged_in, ["subscribe-user"]) is None

    anonymous = websocket_request(None)
    assert anonymous.user.is_authenticated() is False
    assert not anonymous.user.is_authenticated
    with pytest.raises(PermissionDenied):
        deny_anonymous(anonymous, ["subscribe-user"])


# -- WS4REDIS_PREFIX and WEBSOCKET_URL ----------------------------------------------------


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app"]


def call(middleware, path: str) -> str:
    statuses = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1"}
    body = b"".join(middleware(environ, lambda status, headers: statuses.append(status)))
    return f"{statuses[0]} {body.decode()}"


def test_prefix_and_websocket_url_read_when_middleware_is_built(ws4redis_settings):
    """override_settings applies to a middleware built under it, and to the publisher."""
    from django.test import override_settings

    from ws4redis_gevent import WebsocketMiddleware

    with override_settings(WS4REDIS_PREFIX="site1", WEBSOCKET_URL="/sock/"):
        middleware = WebsocketMiddleware(wsgi_app)
        assert RedisPublisher(facility=FACILITY, broadcast=True).channels == [
            f"site1:broadcast:{FACILITY}"
        ]
    assert middleware.settings.prefix == "site1"
    assert middleware.settings.websocket_url == "/sock/"
    assert call(middleware, "/ws/x") == "200 OK the app"
    assert call(middleware, "/sock/x").startswith("426 ")  # a websocket URL, not upgraded

    default = WebsocketMiddleware(wsgi_app)
    assert (default.settings.prefix, default.settings.websocket_url) == (None, "/ws/")
    assert call(default, "/sock/x") == "200 OK the app"


def test_server_uses_prefix_and_websocket_url_from_django_settings(
    start_django_server, browser, redis_url
):
    """A server whose Django settings set both serves websockets under the URL and
    subscribes to prefixed channels; the old URL reaches Django (404)."""
    server = start_django_server(settings={"WS4REDIS_PREFIX": "site1", "WEBSOCKET_URL": "/sock/"})
    with pytest.raises(InvalidStatus) as not_found:
        server.connect(f"/ws/{FACILITY}?subscribe-broadcast")
    assert not_found.value.response.status_code == 404
    with server.connect(f"/sock/{FACILITY}?subscribe-broadcast") as ws:
        assert server.stats()["channels"] == {f"site1:broadcast:{FACILITY}": 1}
        publish(redis_url, "unprefixed", broadcast=True)
        publish(redis_url, "prefixed", prefix="site1", broadcast=True)
        assert ws.recv(timeout=5) == "prefixed"


# -- the context processor ----------------------------------------------------------------


def context(secure: bool = False) -> dict:
    from django.test import RequestFactory

    from ws4redis_gevent.context_processors import default

    return default(RequestFactory().get("/", secure=secure))


def test_context_websocket_uri_follows_the_request_scheme(ws4redis_settings):
    """WEBSOCKET_URI is wss:// for a secure request, ws:// otherwise, with WEBSOCKET_URL."""
    from django.test import override_settings

    assert context()["WEBSOCKET_URI"] == "ws://testserver/ws/"
    assert context(secure=True)["WEBSOCKET_URI"] == "wss://testserver/ws/"
    with override_settings(WEBSOCKET_URL="/live/"):
        assert context(secure=True)["WEBSOCKET_URI"] == "wss://testserver/live/"


def test_context_heartbeat_is_a_javascript_literal(ws4redis_settings):
    """WS4REDIS_HEARTBEAT is a quoted JS string, null when unset, safe inside <script>."""
    from django.test import override_settings

    assert context()["WS4REDIS_HEARTBEAT"] == "null"
    with override_settings(WS4REDIS_HEARTBEAT="--heartbeat--"):
        assert context()["WS4REDIS_HEARTBEAT"] == '"--heartbeat--"'
    with override_settings(WS4REDIS_HEARTBEAT="</script><script>alert(1)//"):
        literal = context()["WS4REDIS_HEARTBEAT"]
    assert "<" not in literal and ">" not in literal
    import json

    assert json.loads(literal) == "</script><script>alert(1)//"


def test_context_processor_renders_in_a_template(ws4redis_settings):
    """Listed in TEMPLATES, it fills a page's script unescaped (quotes stay quotes)."""
    from django.template import engines
    from django.test import RequestFactory, override_settings

    template = engines["django"].from_string(
        "<script>connect('{{ WEBSOCKET_URI }}', {{ WS4REDIS_HEARTBEAT }});</script>"
    )
    with override_settings(WS4REDIS_HEARTBEAT="--heartbeat--"):
        page = template.render(request=RequestFactory().get("/", secure=True))
    assert page == "<script>connect('wss://testserver/ws/', \"--heartbeat--\");</script>"


# -- fetch_message through a view ---------------------------------------------------------


def fetched(client, audience: str = "any") -> str | None:
    status, body = client.request(f"/fetch/{FACILITY}/?audience={audience}")
    assert status in (200, 204), body
    return body.decode() if status == 200 else None


def test_fetch_message_in_a_view_returns_the_newest_among_audiences(
    django_server, browser, redis_url
):
    """audience='any' answers the newest persisted message of the request's session, user,
    groups and the broadcast; a named audience searches only its own channels."""
    john = browser(django_server, "john")
    mary = browser(django_server, "mary")
    assert fetched(john) is None

    publish(redis_url, "broadcast 1", broadcast=True)
    assert fetched(john) == fetched(mary) == "broadcast 1"
    publish(redis_url, "to john", users=["john"])
    assert fetched(john) == "to john"
    assert fetched(mary) == "broadcast 1"
    publish(redis_url, "to chatters", groups=["chatters"])
    assert fetched(john) == fetched(mary) == "to chatters"
    john.publish(FACILITY, "john's session", to="session")
    assert fetched(john) == "john's session"
    assert fetched(mary) == "to chatters"
    publish(redis_url, "broadcast 2", broadcast=True)
    assert fetched(john) == fetched(mary) == "broadcast 2"

    assert fetched(john, "user") == "to john"
    assert fetched(mary, "user") is None
    assert fetched(john, "group") == "to chatters"
    assert fetched(john, "session") == "john's session"
    assert fetched(mary, "session") is None
    assert fetched(browser(django_server), "any") == "broadcast 2"  # anonymous
