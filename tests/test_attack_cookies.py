"""Attack review: every plain-WSGI handshake parsed its Cookie header with ``SimpleCookie``,
whether or not a callback reads ``request.COOKIES``. On Python before 3.11.10 / 3.12.6
(CVE-2024-7592; this machine runs 3.11.7) unquoting a quoted value full of backslash escapes
takes quadratic time: one 64 KB header (the server's line limit) held the worker's only CPU
for about 20 s, with every websocket and HTTP request of the worker waiting.

Cookies are now parsed on first use, in one linear pass."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from ws4redis_gevent.identity import WebsocketRequest, parse_cookies

HOSTILE = 'a="' + "\\a" * 32000 + '"'


def _hostile_handshake(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            (
                "GET /ws/feed?subscribe-broadcast&subscribe-session HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nCookie: sessionid={HOSTILE[2:]}\r\n\r\n"
            ).encode("latin-1")
        )
        sock.recv(1024)


def test_hostile_cookie_header_does_not_stall_the_worker(start_server):
    server = start_server()

    thread = threading.Thread(target=_hostile_handshake, args=(server.port,))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    with urllib.request.urlopen(server.http_url + "/probe", timeout=60) as response:
        response.read()
    waited = time.monotonic() - started
    thread.join(60)
    assert waited < 5, f"an HTTP request waited {waited:.1f} s behind one Cookie header"


def test_cookies_parse_like_a_browser_sends_them():
    assert parse_cookies('sessionid=abc; csrftoken="x\\"y\\073"; flag') == {
        "sessionid": "abc",
        "csrftoken": 'x"y;',
    }
    request = WebsocketRequest({"HTTP_COOKIE": "a=1; b=2"}, "feed")
    assert request.COOKIES == {"a": "1", "b": "2"}


def test_hostile_cookie_header_does_not_stall_a_django_worker(start_django_server):
    """The same header against the Django stack: the session cookie is read without Django's
    parse_cookie (quadratic on this Python as well: 6 s for 32 KB)."""
    server = start_django_server()
    thread = threading.Thread(target=_hostile_handshake, args=(server.port,))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"GET /ws/feed HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.recv(1024)
    waited = time.monotonic() - started
    thread.join(60)
    assert waited < 5, f"a request waited {waited:.1f} s behind one Cookie header"
