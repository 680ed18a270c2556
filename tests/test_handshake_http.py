"""The opening handshake over real HTTP to a server process: what passes through, what is refused.

Requests outside WEBSOCKET_URL reach the wrapped app unchanged; bad websocket handshakes under it
get a precise 4xx with a readable reason (never a 500), and the worker goes on serving.
"""

from __future__ import annotations

import http.client
import socket
import uuid

import pytest

pytestmark = pytest.mark.integration

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the sample key of RFC 6455 section 1.3
WEBSOCKET_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def raw_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> http.client.HTTPResponse:
    """Send one hand-written request on a new socket; the response is read completely."""
    lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        response.body = response.read()  # type: ignore[attr-defined]
        response.close()
    return response


def assert_serves_websockets(server) -> None:
    """A good websocket still opens and relays through Redis on this server."""
    word = uuid.uuid4().hex
    with server.connect("/ws/check?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send(word)
        assert ws.recv(timeout=5) == word


# -- requests that are not websocket handshakes under the URL ------------------------------


@pytest.mark.parametrize("path", ["/other", "/", "/ws", "/wsx/foo", "/other/ws/foo"])
def test_get_outside_websocket_url_reaches_app(server, path):
    """GET outside WEBSOCKET_URL is answered by the wrapped app."""
    response = raw_request(server.port, "GET", path)
    assert response.status == 200
    assert response.body == f"app saw GET {path}".encode()


def test_post_with_body_reaches_app_and_connection_stays_usable(server):
    """A POST with a body reaches the app; the kept-alive connection then serves a GET."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/other",
            body=b"x" * 10000,
            headers={"Content-Type": "application/octet-stream"},
        )
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"app saw POST /other")
        connection.request("GET", "/other?a=1")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"app saw GET /other")
    finally:
        connection.close()


def test_upgrade_request_outside_websocket_url_reaches_app(server):
    """A websocket handshake outside WEBSOCKET_URL is not taken over: the app answers it."""
    response = raw_request(server.port, "GET", "/other", WEBSOCKET_HEADERS)
    assert response.status == 200
    assert response.body == b"app saw GET /other"


# -- refused handshakes --------------------------------------------------------------------


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in WEBSOCKET_HEADERS.items() if k != name}


def _with(**changes: str) -> dict[str, str]:
    headers = dict(WEBSOCKET_HEADERS)
    headers.update({k.replace("_", "-"): v for k, v in changes.items()})
    return headers


REFUSALS = {
    # name: (method, path, headers, HTTP version, expected status, words of the reason)
    "plain GET": ("GET", "/ws/foo", {}, "HTTP/1.1", 426, "websockets only"),
    "upgrade to another protocol": (
        "GET",
        "/ws/foo",
        _with(Upgrade="h2c"),
        "HTTP/1.1",
        426,
        "websockets only",
    ),
    "POST upgrade": ("POST", "/ws/foo", WEBSOCKET_HEADERS, "HTTP/1.1", 405, "GET"),
    "HTTP/1.0 upgrade": ("GET", "/ws/foo", WEBSOCKET_HEADERS, "HTTP/1.0", 400, "HTTP/1.1"),
    "Connection without Upgrade": (
        "GET",
        "/ws/foo",
        _with(Connection="keep-alive"),
        "HTTP/1.1",
        400,
        "Connection",
    ),
    "missing key": (
        "GET",
        "/ws/foo",
        _without("Sec-WebSocket-Key"),
        "HTTP/1.1",
        400,
        "Sec-WebSocket-Key",
    ),
    "key not base64": (
        "GET",
        "/ws/foo",
        _with(Sec_WebSocket_Key="not base64!!"),
        "HTTP/1.1",
        400,
        "Sec-WebSocket-Key",
    ),
    "key of 15 bytes": (
        "GET",
        "/ws/foo",
        _with(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAA"),
        "HTTP/1.1",
        400,
        "Sec-WebSocket-Key",
    ),
    "key not ASCII": (
        "GET",
        "/ws/foo",
        _with(Sec_WebSocket_Key="\xe9" * 24),
        "HTTP/1.1",
        400,
        "Sec-WebSocket-Key",
    ),
    "missing version": (
        "GET",
        "/ws/foo",
        _without("Sec-WebSocket-Version"),
        "HTTP/1.1",
        400,
        "Sec-WebSocket-Version",
    ),
    "version 8": ("GET", "/ws/foo", _with(Sec_WebSocket_Version="8"), "HTTP/1.1", 426, "version"),
    "no facility": ("GET", "/ws/", WEBSOCKET_HEADERS, "HTTP/1.1", 404, "facility"),
    "no facility, with flags": (
        "GET",
        "/ws/?subscribe-broadcast",
        WEBSOCKET_HEADERS,
        "HTTP/1.1",
        404,
        "facility",
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_bad_handshake_is_refused_and_worker_keeps_serving(server, case):
    """Each bad handshake gets its 4xx with a text reason; a good websocket opens afterwards."""
    method, path, headers, version, status, reason = REFUSALS[case]
    response = raw_request(server.port, method, path, headers, version=version)
    assert response.status == status, response.body
    assert response.getheader("Content-Type", "").startswith("text/plain")
    assert reason in response.body.decode("utf-8")
    assert_serves_websockets(server)
    log = server.stop()
    assert "Traceback" not in log


def test_plain_get_gets_426_with_upgrade_header(server):
    """426 names the protocol to upgrade to (RFC 7231 section 6.5.15)."""
    response = raw_request(server.port, "GET", "/ws/foo")
    assert response.status == 426
    assert response.getheader("Upgrade", "").lower() == "websocket"
    assert b"websocket" in response.body


def test_post_upgrade_gets_405_allowing_get(server):
    """405 lists GET as the allowed method."""
    response = raw_request(server.port, "POST", "/ws/foo", WEBSOCKET_HEADERS, body=b"data")
    assert response.status == 405
    assert response.getheader("Allow") == "GET"


def test_unsupported_version_gets_426_naming_version_13(server):
    """An unsupported version is answered with the version the server speaks (section 4.4)."""
    response = raw_request(server.port, "GET", "/ws/foo", _with(Sec_WebSocket_Version="8"))
    assert response.status == 426
    assert response.getheader("Sec-WebSocket-Version") == "13"


def test_refusals_in_a_row_leave_nothing_behind(server):
    """Many refusals on one worker: no websocket or channel is left, and it keeps serving."""
    for method, path, headers, version, status, _ in REFUSALS.values():
        for _ in range(3):
            assert raw_request(server.port, method, path, headers, version=version).status == status
    stats = server.stats()
    assert stats["websockets"] == 0 and stats["channels"] == {}
    assert_serves_websockets(server)
