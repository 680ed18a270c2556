"""Request headers as the gevent backend's handlers read them (RequestHeaders, in place of
pywsgi's e-mail parser): the same CGI variables, the same limits, and a 400 for lines RFC 9112
says to reject. Unit cases on a buffered reader, then real requests to pywsgi and gunicorn."""

from __future__ import annotations

import io
import json
import socket

import pytest
from test_gunicorn import start_gunicorn

from ws4redis_gevent.backends.gevent import RequestCutShort, RequestHeaders

HANDSHAKE = (
    b"Host: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Cookie: a=1\r\nUser-Agent: test/1.0  \r\n\r\n"
)


def read(data: bytes, buffer_size: int = 8192) -> tuple[RequestHeaders, bytes]:
    """Headers read from ``data``, and what the reader still holds after them. A small
    ``buffer_size`` keeps the blank line out of the first buffer: the line-by-line path."""
    reader = io.BufferedReader(io.BytesIO(data), buffer_size=buffer_size)
    headers = RequestHeaders.read(reader)
    return headers, reader.read()


@pytest.mark.parametrize("buffer_size", [8192, 16], ids=["in-one-piece", "line-by-line"])
def test_fields_are_read_up_to_the_blank_line_and_no_further(buffer_size):
    headers, rest = read(HANDSHAKE + b"\x81\x05hello", buffer_size)
    assert headers.status == ""
    assert rest == b"\x81\x05hello"  # a frame right behind the handshake stays in the reader
    assert headers.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert headers.get("USER-AGENT") == "test/1.0"  # whitespace around a value is not part of it
    assert headers.get("X-Missing", "none") == "none"
    assert headers.items()[0] == ("Host", "127.0.0.1:8000")
    assert headers.headers[1] == "Upgrade: websocket\r\n"
    assert ("HTTP_SEC_WEBSOCKET_VERSION", "13") in headers.environ_items()


@pytest.mark.parametrize("buffer_size", [8192, 16], ids=["in-one-piece", "line-by-line"])
def test_bare_line_feeds_end_lines_too(buffer_size):
    headers, rest = read(b"Host: x\nX-A: 1\n\nbody", buffer_size)
    assert (headers.status, headers.items(), rest) == ("", [("Host", "x"), ("X-A", "1")], b"body")


def test_no_header_at_all():
    headers, rest = read(b"\r\nnext")
    assert (headers.status, headers.items(), rest) == ("", [], b"next")


def test_first_value_wins_and_deleting_removes_every_one():
    headers, _ = read(b"X-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n")
    assert headers.get("X-A") == "1"
    assert headers.typeheader == "text/plain" and headers.getheader("content-length") == "5"
    del headers["content-length"]
    assert headers.get("Content-Length") is None
    assert [name for name, _ in headers.items()] == ["X-A", "x-a", "Content-Type"]
    # Content-Type and Content-Length are CGI variables of their own, not HTTP_ ones.
    assert headers.environ_items() == [("HTTP_X_A", "1"), ("HTTP_X_A", "2")]


def test_names_with_an_underscore_never_become_cgi_variables():
    # X_Forwarded_For must not pass for X-Forwarded-For (both would be HTTP_X_FORWARDED_FOR).
    headers, _ = read(b"X_Forwarded_For: 6.6.6.6\r\nX-Real: 1\r\n\r\n")
    assert headers.environ_items() == [("HTTP_X_REAL", "1")]


BAD = {
    "whitespace before the colon": b"Host : x\r\n\r\n",
    "a folded line": b"Host: x\r\nX-A: 1\r\n  more\r\n\r\n",
    "no colon": b"Host x\r\n\r\n",
    "an empty name": b": x\r\n\r\n",
    "a control character in a value": b"X-A: a\x01b\r\n\r\n",
    "a carriage return inside a value": b"X-A: a\rb\r\n\r\n",
    "a non-ASCII name": b"X-\xe9: 1\r\n\r\n",
    "101 lines": b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
    "a line of 64 KiB and one byte": b"X-A: " + b"a" * 65532 + b"\r\n\r\n",
}


@pytest.mark.parametrize("buffer_size", [8192, 16], ids=["in-one-piece", "line-by-line"])
@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_line_rfc_9112_rejects_gives_a_status(case, buffer_size):
    headers, _ = read(BAD[case], buffer_size)
    assert headers.status, headers.items()
    assert headers.items() == []


@pytest.mark.parametrize("buffer_size", [8192, 16], ids=["in-one-piece", "line-by-line"])
@pytest.mark.parametrize("data", [b"Host: x\r\nUpg", b"Host: x\r\n", b"Host: x"])
def test_a_stream_ending_in_the_headers_is_a_client_gone(data, buffer_size):
    with pytest.raises(RequestCutShort):
        read(data, buffer_size)


def test_100_lines_of_64_kib_are_still_a_request():
    line = b"X-A: " + b"a" * 65529 + b"\r\n"
    assert len(line) == 65536
    headers, _ = read(line * 2 + b"".join(b"X-%d: v\r\n" % i for i in range(98)) + b"\r\n")
    assert headers.status == "" and len(headers.items()) == 100


# -- real requests -------------------------------------------------------------------------


def exchange(port: int, data: bytes, responses: int = 1) -> list[bytes]:
    """Send ``data`` (one or more requests), read ``responses`` responses (with bodies)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        out = []
        for _ in range(responses):
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            out.append(status + reader.read(length))
        return out


ENVIRON_REQUEST = (
    b"GET /_environ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\nX-A: 2\r\nCookie: a=1\r\n"
    b"Cookie: b=2\r\nX_Sneaky: 1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
)


def check_environ(port: int) -> None:
    # Two requests in one packet (keep-alive, pipelined): both are answered.
    first, second = exchange(port, ENVIRON_REQUEST + ENVIRON_REQUEST, responses=2)
    for response in (first, second):
        status, _, body = response.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 200"), response
        environ = json.loads(body)
        assert environ["HTTP_X_A"] == "1,2"  # repeated fields joined, as pywsgi does
        assert environ["HTTP_COOKIE"] == "a=1; b=2"
        assert environ["CONTENT_TYPE"] == "text/plain" and "HTTP_CONTENT_TYPE" not in environ
        assert "HTTP_X_SNEAKY" not in environ


def check_bad_lines(port: int) -> None:
    for case in ("whitespace before the colon", "a folded line", "a control character in a value"):
        (response,) = exchange(port, b"GET /ws/foo HTTP/1.1\r\n" + BAD[case])
        assert response.startswith(b"HTTP/1.1 400"), (case, response)


def check_cut_short(port: int) -> None:
    # Half a handshake, then the end of the stream: no response, the connection just closes.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /ws/foo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096) == b""


def test_pywsgi_handler_makes_the_same_environ_and_rejects_bad_lines(server):
    check_environ(server.port)
    check_bad_lines(server.port)
    check_cut_short(server.port)
    with server.connect("/ws/foo?subscribe-broadcast"):
        pass
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("Invalid headers status") == 3, log[-3000:]  # check_bad_lines' three


def test_gunicorn_handler_makes_the_same_environ_and_rejects_bad_lines(redis_url):
    proc, port = start_gunicorn(redis_url)
    try:
        check_environ(port)
        check_bad_lines(port)
        check_cut_short(port)
        (response,) = exchange(port, b"GET /ws/foo?subscribe-broadcast HTTP/1.1\r\n" + HANDSHAKE)
        assert response.startswith(b"HTTP/1.1 101"), response
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    # No access log is configured: none is built, and nothing fails building it.
    assert "Traceback" not in err and " failed with " not in err, err[-3000:]
