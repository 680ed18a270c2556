"""The Host check (ws4redis_gevent.hosts, django_hosts): pure rules first, then real handshakes.

A server that answers any Host can be reached through DNS rebinding: a page on
``rebind.attacker.example`` whose name resolves to the server is "same origin" with it. So the
Host is validated before the upgrade, with 400 and a reason: against ALLOWED_HOSTS under Django
(Django's own rules), against WS4REDIS_ALLOWED_HOSTS (default: loopback names) otherwise.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from redis_server import pubsub_channels
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.hosts import LOOPBACK_HOSTS, HostPolicy, is_allowed_host, split_host
from ws4redis_gevent.settings import Settings

PATH = "/ws/news?subscribe-broadcast&publish-broadcast&echo"
REBIND = "rebind.attacker.example"

# -- Django's semantics --------------------------------------------------------------------

PATTERNS = [
    [],
    ["*"],
    ["example.com"],
    [".example.com"],
    ["Example.COM"],
    ["127.0.0.1", "[::1]"],
    list(LOOPBACK_HOSTS),
    ["", ".example.com."],
]
HOSTS = [
    "example.com",
    "example.com:8000",
    "EXAMPLE.com.",
    "app.example.com",
    "notexample.com",
    "example.com.evil.org",
    "localhost",
    "app.localhost:3000",
    "127.0.0.1:8000",
    "[::1]:8000",
    "[::1]",
    REBIND,
    "bad host",
    "example.com:",
    "exa_mple.com",
    "",
]


@pytest.mark.parametrize("patterns", PATTERNS, ids=str)
@pytest.mark.parametrize("host", HOSTS)
def test_host_refusal_agrees_with_django_get_host(host, patterns):
    """A Host is allowed exactly when Django's split_domain_port and validate_host allow it."""
    from django.http.request import split_domain_port, validate_host

    domain, _ = split_domain_port(host)
    django_allows = bool(domain) and validate_host(domain, patterns)
    assert (HostPolicy(tuple(patterns)).refusal(host) is None) == django_allows


def test_a_port_of_more_than_five_digits_is_not_a_host():
    """Stricter than Django (which reads any number of digits): no port has six."""
    assert HostPolicy(("*",)).refusal("example.com:99999999") is not None
    assert HostPolicy(("*",)).refusal("example.com:65535") is None


def test_wildcard_allows_every_valid_host_only():
    assert is_allowed_host(REBIND, ["*"])
    assert HostPolicy(("*",)).refusal("bad host") is not None
    assert split_host(REBIND) == (REBIND, None)


def test_refusal_names_the_setting_to_change():
    reason = HostPolicy(LOOPBACK_HOSTS).refusal(f"{REBIND}:8000")
    assert reason == f"Host {REBIND!r} is not allowed: add it to WS4REDIS_ALLOWED_HOSTS"
    reason = HostPolicy((), setting="ALLOWED_HOSTS").refusal("example.com")
    assert reason is not None and reason.endswith("add it to ALLOWED_HOSTS")


def test_forwarded_host_is_read_only_when_trusted():
    environ = {"HTTP_HOST": "10.0.0.5:8000", "HTTP_X_FORWARDED_HOST": "public.example"}
    assert HostPolicy().host(environ) == "10.0.0.5:8000"
    assert HostPolicy(use_forwarded_host=True).host(environ) == "public.example"
    assert HostPolicy(use_forwarded_host=True).host({"HTTP_HOST": "a.example"}) == "a.example"


@pytest.mark.parametrize(
    ("environ", "header", "scheme"),
    [
        ({"wsgi.url_scheme": "https"}, None, "https"),
        ({"wsgi.url_scheme": "http"}, None, "http"),
        ({}, None, "http"),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, None, "http"),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, ("HTTP_X_FORWARDED_PROTO", "https"), "https"),
        ({"HTTP_X_FORWARDED_PROTO": "https, http"}, ("HTTP_X_FORWARDED_PROTO", "https"), "https"),
        ({"HTTP_X_FORWARDED_PROTO": "http"}, ("HTTP_X_FORWARDED_PROTO", "https"), "http"),
        ({"wsgi.url_scheme": "https"}, ("HTTP_X_FORWARDED_PROTO", "https"), "https"),
    ],
)
def test_scheme_as_django_request_scheme(environ, header, scheme):
    """wsgi.url_scheme, or SECURE_PROXY_SSL_HEADER's first value when the header is present."""
    assert HostPolicy(secure_proxy_ssl_header=header).scheme(environ) == scheme


@pytest.mark.parametrize(
    "value", ["example.com", b"example.com", 42, ["example.com", 42]], ids=repr
)
def test_malformed_allowed_hosts_are_a_configuration_error(value):
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_ALLOWED_HOSTS"):
        Settings(allowed_hosts=value)


# -- real handshakes -----------------------------------------------------------------------


def connect_as(server: Any, host: str, path: str = PATH, **kwargs: Any) -> ClientConnection:
    """A websocket to ``server`` whose handshake names ``host`` (as a browser that resolved
    ``host`` to the server's address would)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        # legacy: a connection used outside a with block (refused_as closes it itself).
        return connect(f"ws://{host}{path}", sock=sock, open_timeout=10, legacy=True, **kwargs)
    except BaseException:
        sock.close()
        raise


def refused_as(server: Any, host: str, path: str = PATH, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        connect_as(server, host, path, **kwargs).close()
    response = refused.value.response
    return response.status_code, response.body.decode("utf-8")


def assert_echoes(ws: ClientConnection) -> None:
    with ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"


@pytest.mark.integration
def test_dns_rebinding_is_refused_with_400_before_subscribing(server, redis_server):
    """The issue's case: Host rebind.attacker.example with Origin http://rebind.attacker.example
    gets 400 with its reason; nothing is subscribed, and loopback names are still served."""
    status, body = refused_as(server, f"{REBIND}:{server.port}", origin=f"http://{REBIND}")
    assert status == 400
    assert f"Host {REBIND!r} is not allowed: add it to WS4REDIS_ALLOWED_HOSTS" in body
    assert server.stats()["channels"] == {}
    assert pubsub_channels(redis_server) == []
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "app.localhost"):
        assert_echoes(connect_as(server, host))


@pytest.mark.integration
def test_plain_wsgi_allowed_hosts_option(start_server):
    """WS4REDIS_ALLOWED_HOSTS (the ``allowed_hosts`` keyword) replaces the loopback default."""
    server = start_server(allowed_hosts=[".example.com"])
    assert_echoes(connect_as(server, "app.example.com", origin="http://app.example.com"))
    assert_echoes(connect_as(server, "example.com:8000"))
    assert refused_as(server, f"127.0.0.1:{server.port}")[0] == 400
    assert refused_as(server, REBIND, origin=f"http://{REBIND}")[0] == 400


@pytest.mark.integration
def test_plain_wsgi_wildcard_serves_any_host(start_server):
    """``["*"]`` serves every Host (as ws4redis did); the origin check still applies."""
    server = start_server(allowed_hosts=["*"])
    assert_echoes(connect_as(server, REBIND))
    status, body = refused_as(server, REBIND, origin="https://evil.example")
    assert status == 403 and "not allowed" in body


@pytest.mark.integration
def test_django_allowed_hosts_refuse_other_hosts(start_django_server):
    """Under Django the Host must match ALLOWED_HOSTS, and the refusal names that setting."""
    server = start_django_server(settings={"ALLOWED_HOSTS": [".example.com"]})
    assert_echoes(connect_as(server, "app.example.com", origin="http://app.example.com"))
    status, body = refused_as(server, REBIND, origin=f"http://{REBIND}")
    assert status == 400 and "add it to ALLOWED_HOSTS" in body
    assert refused_as(server, f"127.0.0.1:{server.port}")[0] == 400


@pytest.mark.integration
def test_django_debug_without_allowed_hosts_serves_loopback_names_only(start_django_server):
    server = start_django_server(settings={"DEBUG": True, "ALLOWED_HOSTS": []})
    assert_echoes(connect_as(server, "localhost:8000", origin="http://localhost:3000"))
    assert_echoes(connect_as(server, "[::1]:8000"))
    assert refused_as(server, REBIND, origin=f"http://{REBIND}")[0] == 400


@pytest.mark.integration
def test_django_ws4redis_allowed_hosts_replaces_allowed_hosts(start_django_server):
    server = start_django_server(
        settings={"ALLOWED_HOSTS": ["*"], "WS4REDIS_ALLOWED_HOSTS": ["ws.example.com"]}
    )
    assert_echoes(connect_as(server, "ws.example.com"))
    status, body = refused_as(server, "www.example.com")
    assert status == 400 and "add it to WS4REDIS_ALLOWED_HOSTS" in body


@pytest.mark.integration
def test_django_forwarded_host_is_validated(start_django_server):
    """With USE_X_FORWARDED_HOST the forwarded host is the one checked, as Django's get_host."""
    server = start_django_server(
        settings={"ALLOWED_HOSTS": ["public.example"], "USE_X_FORWARDED_HOST": True}
    )
    good = {"X-Forwarded-Host": "public.example"}
    assert_echoes(connect_as(server, "10.0.0.5:8000", additional_headers=good))
    bad = {"X-Forwarded-Host": REBIND}
    status, body = refused_as(server, "public.example", additional_headers=bad)
    assert status == 400 and REBIND in body


@pytest.mark.integration
def test_http_page_refused_for_an_https_site(start_django_server):
    """Behind a TLS proxy (SECURE_PROXY_SSL_HEADER), an http:// page of the same host gets
    403: anyone on its network path could have altered it. Its https:// page connects."""
    server = start_django_server(
        settings={
            "ALLOWED_HOSTS": ["app.example.com"],
            "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        }
    )
    tls = {"X-Forwarded-Proto": "https"}
    assert_echoes(
        connect_as(
            server, "app.example.com", origin="https://app.example.com", additional_headers=tls
        )
    )
    status, body = refused_as(
        server, "app.example.com", origin="http://app.example.com", additional_headers=tls
    )
    assert status == 403 and "an http page for an https site" in body
    # Another port of the same host is another origin.
    status, _ = refused_as(
        server, "app.example.com", origin="https://app.example.com:8443", additional_headers=tls
    )
    assert status == 403
