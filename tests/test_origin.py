"""The Origin check (ws4redis_gevent.origin): pure rules first, then real handshakes.

A browser page may open a websocket to any server, with the user's cookies: the server must
refuse foreign origins with 403 before the upgrade. Origins are (scheme, host, port): same-host
pages and allowed-hosts patterns on the request's scheme and port, and WS4REDIS_ALLOWED_ORIGINS
are let through; a missing Origin (a program, not a
browser) is allowed unless WS4REDIS_ALLOW_MISSING_ORIGIN is off; ``null`` is refused.
"""

from __future__ import annotations

import pytest
from redis_server import pubsub_channels
from websockets.exceptions import InvalidStatus

from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.origin import (
    Origin,
    OriginPolicy,
    host_matches,
    parse_origin,
    split_host,
)

PATH = "/ws/news?subscribe-broadcast&publish-broadcast&echo"

# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", Origin("https", "example.com", 443)),
        ("http://example.com", Origin("http", "example.com", 80)),
        ("http://example.com:80", Origin("http", "example.com", 80)),
        ("HTTPS://App.Example.COM:8443", Origin("https", "app.example.com", 8443)),
        ("http://127.0.0.1:8000", Origin("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", Origin("http", "[::1]", 8000)),
        ("https://example.com.", Origin("https", "example.com", 443)),
        ("chrome-extension://abcdef", Origin("chrome-extension", "abcdef", None)),
    ],
)
def test_parse_origin(value, expected):
    """Origins are lower-cased, and get their scheme's default port when they name none."""
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "null",
        "",
        "example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q",
        "https://user@example.com",
        "https://example.com, https://evil.com",
        "https://exa mple.com",
        "https://example.com:port",
        "https://[::1",
        "//example.com",
    ],
)
def test_parse_origin_rejects_what_is_not_a_serialised_origin(value):
    """``null``, paths, user info, lists and garbage are not origins."""
    assert parse_origin(value) is None


def test_origin_str_omits_the_default_port():
    assert str(Origin("https", "example.com", 443)) == "https://example.com"
    assert str(Origin("http", "example.com", 8000)) == "http://example.com:8000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM:8000", ("example.com", 8000)),
        ("example.com.", ("example.com", None)),
        ("[::1]:8000", ("[::1]", 8000)),
        ("[::1]", ("[::1]", None)),
        ("bad host", None),
        ("example.com:", None),
        ("", None),
    ],
)
def test_split_host(value, expected):
    assert split_host(value) == expected


# -- ALLOWED_HOSTS patterns ----------------------------------------------------------------

HOST_CASES = [
    ("example.com", ["example.com"]),
    ("EXAMPLE.com", ["example.com"]),
    ("example.com", [".example.com"]),
    ("app.example.com", [".example.com"]),
    ("deep.app.example.com", [".example.com"]),
    ("notexample.com", [".example.com"]),
    ("example.com.evil.org", [".example.com"]),
    ("app.example.com", ["example.com"]),
    ("example.com", ["Example.Com"]),
    ("127.0.0.1", ["127.0.0.1", "localhost"]),
    ("[::1]", ["[::1]"]),
    ("example.org", []),
]


@pytest.mark.parametrize(("domain", "patterns"), HOST_CASES)
def test_host_matches_like_django_validate_host(domain, patterns):
    """The same answers as Django's validate_host, on patterns without '*'."""
    from django.http.request import validate_host

    assert host_matches(domain.lower(), patterns) == validate_host(domain.lower(), patterns)


def test_wildcard_allowed_host_allows_no_origin():
    """ALLOWED_HOSTS = ['*'] says any Host is served, not that any site may use the sessions."""
    assert not host_matches("evil.com", ["*"])
    policy = OriginPolicy.build(allowed_hosts=["*"])
    assert policy.refusal("https://evil.com", "example.com") is not None


# -- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("https://example.com", "example.com"),
        ("https://example.com", "example.com:443"),
        ("http://example.com", "EXAMPLE.com:80"),
        ("https://example.com:8443", "example.com:8443"),
        ("http://[::1]:8000", "[::1]:8000"),
    ],
)
def test_same_host_origin_is_allowed(origin, host):
    """A page served by this very host (same name, same port) may open websockets."""
    assert OriginPolicy.build().refusal(origin, host) is None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.com", "example.com"),
        ("https://example.com.evil.com", "example.com"),
        ("https://example.com:8443", "example.com"),
        ("http://example.com", "example.com:8000"),
        ("https://example.com", "example.com:80"),
        ("http://127.0.0.1:8001", "127.0.0.1:8000"),
        ("null", "example.com"),
        ("https://example.com", None),
        ("https://example.com", "not a host"),
        ("garbage", "example.com"),
    ],
)
def test_foreign_origin_is_refused_with_a_reason(origin, host):
    """Another host, another port, ``null`` or garbage: refused, with a readable reason."""
    reason = OriginPolicy.build().refusal(origin, host)
    assert reason is not None and "not allowed" in reason


def test_missing_origin_follows_allow_missing():
    assert OriginPolicy.build().refusal(None, "example.com") is None
    reason = OriginPolicy.build(allow_missing=False).refusal(None, "example.com")
    assert reason is not None and "no Origin" in reason


def test_allowed_origins_are_compared_as_origins():
    """Listed origins match by scheme, host and port, whatever the case or explicit port."""
    policy = OriginPolicy.build(["https://App.example.com", "http://localhost:3000/"])
    assert policy.refusal("https://app.example.com", "api.example.com") is None
    assert policy.refusal("https://app.example.com:443", "api.example.com") is None
    assert policy.refusal("http://localhost:3000", "127.0.0.1:8000") is None
    assert policy.refusal("http://app.example.com", "api.example.com") is not None
    assert policy.refusal("https://app.example.com:8443", "api.example.com") is not None
    assert policy.refusal("http://localhost:3001", "127.0.0.1:8000") is not None


def test_star_allows_every_origin():
    policy = OriginPolicy.build(["*"])
    for origin in ("https://evil.com", "null", "garbage"):
        assert policy.refusal(origin, "example.com") is None


def test_allowed_hosts_patterns_allow_origins_on_those_hosts_same_scheme_and_port():
    """An origin whose host matches an allowed-hosts pattern passes when its scheme and port
    are the request's (a subdomain's page using the API host's websockets)."""
    policy = OriginPolicy.build(allowed_hosts=[".example.com", "example.org"])
    assert policy.refusal("https://app.example.com", "api.example.com", "https") is None
    assert policy.refusal("https://example.com:8443", "api.example.com:8443", "https") is None
    assert policy.refusal("http://example.org", "api.example.com") is None
    assert policy.refusal("https://example.net", "api.example.com", "https") is not None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://app.example.com:8443", "api.example.com"),
        ("https://app.example.com", "api.example.com:8443"),
        ("https://app.example.com", "10.0.0.5:8000"),
        ("http://app.example.com:8080", "api.example.com"),
    ],
)
def test_allowed_hosts_patterns_do_not_allow_other_ports(origin, host):
    """Changed: another port is another origin (it used to pass once the host matched)."""
    policy = OriginPolicy.build(allowed_hosts=[".example.com"])
    reason = policy.refusal(origin, host, "https" if origin.startswith("https") else "http")
    assert reason is not None and "not allowed" in reason


@pytest.mark.parametrize(
    "allowed_hosts", [[], [".example.com"]], ids=["same host", "allowed-hosts pattern"]
)
def test_http_page_is_refused_for_an_https_site(allowed_hosts):
    """An ``http://`` page (alterable by anyone on the network) may not use an https site's
    websockets, even on the same host; an ``https://`` page may use an http request of its
    host (TLS ended at a proxy)."""
    policy = OriginPolicy.build(allowed_hosts=allowed_hosts)
    reason = policy.refusal("http://example.com", "example.com", "https")
    assert reason is not None and "an http page for an https site" in reason
    assert policy.refusal("https://example.com", "example.com", "https") is None
    assert policy.refusal("https://example.com", "example.com", "http") is None
    assert policy.refusal("http://example.com", "example.com", "http") is None


def test_any_port_hosts_allow_local_pages_on_any_port_and_scheme():
    """The development defaults: loopback pages on any port (a front-end's dev server)."""
    policy = OriginPolicy.build(any_port_hosts=[".localhost", "127.0.0.1", "[::1]"])
    for origin in ("http://localhost:3000", "https://127.0.0.1:5173", "http://[::1]:8080"):
        assert policy.refusal(origin, "127.0.0.1:8000", "https") is None
    assert policy.refusal("http://evil.example:3000", "127.0.0.1:8000") is not None


@pytest.mark.parametrize(
    "entries",
    [["example.com"], ["https://example.com/path"], ["null"], [42], "https://example.com"],
    ids=["no scheme", "a path", "null", "not a string", "a string, not a list"],
)
def test_malformed_allowed_origins_are_a_configuration_error(entries):
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_ALLOWED_ORIGINS"):
        OriginPolicy.build(entries)


# -- real handshakes, plain WSGI -----------------------------------------------------------


def refused_status(server, origin, path=PATH, **kwargs) -> tuple[int, str]:
    """The status and body of a refused handshake with this Origin."""
    with pytest.raises(InvalidStatus) as refused:
        server.connect(path, origin=origin, **kwargs)
    response = refused.value.response
    return response.status_code, response.body.decode("utf-8")


def assert_echoes(ws) -> None:
    ws.send("hello")
    assert ws.recv(timeout=5) == "hello"


@pytest.mark.integration
def test_same_host_origin_opens_websocket(server):
    """By default, a page served by the same host and port opens its websocket."""
    with server.connect(PATH, origin=f"http://127.0.0.1:{server.port}") as ws:
        assert_echoes(ws)


@pytest.mark.integration
@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://127.0.0.1:1", "http://localhost:{port}", "null"],
    ids=["another site", "another port", "another name for the host", "null"],
)
def test_cross_site_handshake_gets_403_before_subscribing(server, redis_server, origin):
    """A foreign origin is refused with 403 and a reason; nothing is subscribed, and the
    server goes on serving."""
    status, body = refused_status(server, origin.format(port=server.port))
    assert status == 403
    assert "not allowed" in body and "WS4REDIS_ALLOWED_ORIGINS" in body
    assert server.stats()["channels"] == {}
    assert pubsub_channels(redis_server) == []
    with server.connect(PATH) as ws:
        assert_echoes(ws)


@pytest.mark.integration
def test_missing_origin_is_allowed_by_default(server):
    """Programs send no Origin (the websockets client does not): allowed by default."""
    with server.connect(PATH) as ws:
        assert_echoes(ws)


@pytest.mark.integration
def test_missing_origin_refused_when_not_allowed(start_server):
    """WS4REDIS_ALLOW_MISSING_ORIGIN = False refuses handshakes without Origin with 403."""
    server = start_server(allow_missing_origin=False)
    status, body = refused_status(server, None)
    assert status == 403 and "no Origin" in body
    with server.connect(PATH, origin=f"http://127.0.0.1:{server.port}") as ws:
        assert_echoes(ws)


@pytest.mark.integration
def test_allowed_origins_let_listed_sites_in(start_server):
    """A site listed in WS4REDIS_ALLOWED_ORIGINS connects; the same host on http does not."""
    server = start_server(allowed_origins=["https://app.example.com"])
    with server.connect(PATH, origin="https://app.example.com") as ws:
        assert_echoes(ws)
    assert refused_status(server, "http://app.example.com")[0] == 403
    assert refused_status(server, "https://evil.example")[0] == 403


@pytest.mark.integration
@pytest.mark.parametrize(
    "options", [{"allowed_origins": ["*"]}, {"check_origin": False}], ids=["'*'", "check off"]
)
def test_origin_check_can_be_opened_up(start_server, options):
    """ws4redis' behaviour (any origin) stays available: ALLOWED_ORIGINS ['*'] or the check off."""
    server = start_server(**options)
    for origin in ("https://evil.example", "null"):
        with server.connect(PATH, origin=origin) as ws:
            assert_echoes(ws)


# -- real handshakes, Django ---------------------------------------------------------------


@pytest.mark.integration
def test_django_allowed_hosts_patterns_allow_origins(start_django_server):
    """Under Django, an origin on a host of ALLOWED_HOSTS passes, others get 403; '*' in
    ALLOWED_HOSTS does not open the check to every site."""
    server = start_django_server(settings={"ALLOWED_HOSTS": [".example.com", "*"]})
    origin = f"http://app.example.com:{server.port}"
    with server.connect("/ws/news?subscribe-broadcast", origin=origin) as ws:
        assert ws.ping().wait(5)
    status, body = refused_status(server, "https://evil.example", "/ws/news")
    assert status == 403 and "not allowed" in body
    # Changed: the same host on another port, or its https page on the default port, is
    # another origin.
    assert refused_status(server, "https://app.example.com", "/ws/news")[0] == 403


@pytest.mark.integration
def test_django_debug_without_allowed_hosts_allows_localhost(start_django_server):
    """DEBUG with an empty ALLOWED_HOSTS allows localhost pages on any port, as Django does."""
    server = start_django_server(settings={"DEBUG": True, "ALLOWED_HOSTS": []})
    with server.connect("/ws/news?subscribe-broadcast", origin="http://localhost:3000") as ws:
        assert ws.ping().wait(5)
    assert refused_status(server, "https://evil.example", "/ws/news")[0] == 403


@pytest.mark.integration
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "not trusted"])
def test_django_forwarded_host_counts_only_when_trusted(start_django_server, trusted):
    """With USE_X_FORWARDED_HOST, the host a proxy forwards is the request's host."""
    server = start_django_server(settings={"ALLOWED_HOSTS": ["*"], "USE_X_FORWARDED_HOST": trusted})
    headers = {"X-Forwarded-Host": "public.example"}
    origin = "https://public.example"
    if trusted:
        with server.connect("/ws/news", origin=origin, additional_headers=headers) as ws:
            assert ws.ping().wait(5)
    else:
        assert refused_status(server, origin, "/ws/news", additional_headers=headers)[0] == 403
