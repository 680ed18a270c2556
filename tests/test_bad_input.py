"""Bad input tried for real, beyond what test_handshake_http.py and test_protocol.py cover:
huge and malformed requests, handshakes with what a handshake must not have, every reserved
opcode, control frames broken in every way, every kind of invalid close code, frames after a
close. Each gets its status or close code, and the worker goes on serving the others.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import struct
import uuid

import pytest
from conftest import wait_for
from raw_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    encode_client_frame,
)
from redis_server import pubsub_channels

pytestmark = pytest.mark.integration

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HEADERS = (
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
).encode()
PUBLISHER = "/ws/foo?subscribe-broadcast&publish-broadcast&echo"


def exchange(port: int, data: bytes) -> http.client.HTTPResponse:
    """Send raw bytes as a request; the response, read completely. A server that stops
    reading a huge request may reset the connection while we send: the response counts."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.body = response.read()  # type: ignore[attr-defined]
    return response


def assert_serves_websockets(server) -> None:
    word = uuid.uuid4().hex
    with server.connect(f"/ws/{word}?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send(word)
        assert ws.recv(timeout=5) == word


def assert_released(server, redis_server) -> None:
    wait_for(lambda: (s := server.stats())["websockets"] == 0 and s["channels"] == {})
    wait_for(lambda: pubsub_channels(redis_server) == [])


# -- malformed and oversized requests ------------------------------------------------------


def request(
    line: bytes = b"GET /ws/foo HTTP/1.1", extra: bytes = b"", headers: bytes = HEADERS
) -> bytes:
    """A request: its line, ``extra`` header lines, then ``headers``, then the blank line."""
    return line + b"\r\n" + extra + headers + b"\r\n"


REQUESTS = {
    # name: (raw request, expected status)
    "request line of 9000 bytes": (request(b"GET /ws/" + b"a" * 9000 + b" HTTP/1.1"), 414),
    "header line of 100 kB": (request(extra=b"X-Big: " + b"a" * 100_000 + b"\r\n"), 400),
    "header line of 4 MB": (request(extra=b"X-Big: " + b"a" * 4_000_000 + b"\r\n"), 400),
    "101 header lines": (request(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(101))), 400),
    "100 headers of 8 kB": (
        request(extra=b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 8000) for i in range(100))),
        400,
    ),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "binary request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    "HTTP/0.9 request": (request(b"GET /ws/foo"), 400),
    "lower-case method": (request(b"get /ws/foo HTTP/1.1"), 405),
    "duplicate Sec-WebSocket-Key": (request(extra=f"Sec-WebSocket-Key: {KEY}\r\n".encode()), 400),
    "no Host header (RFC 6455 4.1, RFC 9112 3.2)": (
        request(headers=HEADERS.replace(b"Host: 127.0.0.1\r\n", b"")),
        400,
    ),
    "a body (Content-Length)": (request(extra=b"Content-Length: 5\r\n") + b"hello", 400),
    "a chunked body": (
        request(extra=b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("case", REQUESTS, ids=list(REQUESTS))
def test_bad_request_gets_its_status_and_the_worker_keeps_serving(server, case):
    """Oversized requests are cut short (414, 400) without reading them whole; requests that
    cannot be websocket handshakes get their 4xx, never a 101 or a 5xx, and never a traceback."""
    data, status = REQUESTS[case]
    response = exchange(server.port, data)
    assert response.status == status, (response.status, response.body)
    assert_serves_websockets(server)
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def test_bytes_that_never_make_a_request_line_are_dropped_at_the_deadline(start_server):
    """A TLS ClientHello (no line end) sent to the plain port: dropped by the handshake
    timeout, not kept forever."""
    server = start_server(handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)))
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert not received.startswith(b"HTTP/1.1 101")
    assert_serves_websockets(server)


# -- frames --------------------------------------------------------------------------------


def assert_closed_with(client: RawClient, code: int) -> None:
    close, _ = client.read_until_close()
    assert close.close_code == code, close
    close.close_reason  # noqa: B018 - must be UTF-8
    assert client.reaches_eof()


FRAME_ERRORS = {
    **{f"reserved opcode {op:#x}": [dict(opcode=op)] for op in (4, 5, 6, 7, 0xC, 0xD, 0xE, 0xF)},
    "unmasked ping": [dict(opcode=PING, payload=b"p", mask=False)],
    "unmasked close": [dict(opcode=CLOSE, payload=struct.pack("!H", 1000), mask=False)],
    "unmasked binary after a good frame": [
        dict(opcode=BINARY, payload=b"ok"),
        dict(opcode=BINARY, payload=b"bad", mask=False),
    ],
    "pong over 125 bytes": [dict(opcode=PONG, payload=b"p" * 126)],
    "fragmented close": [dict(opcode=CLOSE, payload=struct.pack("!H", 1000), fin=False)],
    "fragmented pong": [dict(opcode=PONG, payload=b"p", fin=False)],
    "reserved bits on a control frame": [dict(opcode=PING, payload=b"p", rsv=4)],
    "reserved bits on a continuation": [
        dict(opcode=TEXT, payload=b"a", fin=False),
        dict(opcode=CONTINUATION, payload=b"b", rsv=2),
    ],
    "data frame between fragments": [
        dict(opcode=BINARY, payload=b"a", fin=False),
        dict(opcode=BINARY, payload=b"b", fin=False),
    ],
    **{
        f"close code {code}": [dict(opcode=CLOSE, payload=struct.pack("!H", code))]
        for code in (0, 1004, 1006, 1015, 1016, 1100, 2000, 2999, 65535)
    },
}


@pytest.mark.parametrize("case", FRAME_ERRORS, ids=list(FRAME_ERRORS))
def test_broken_frame_closes_1002_and_the_worker_keeps_serving(server, redis_server, case):
    """Each violation of RFC 6455 sections 5 and 7.4 closes with 1002 and frees everything."""
    with RawClient(server.port, PUBLISHER) as client:
        for frame in FRAME_ERRORS[case]:
            client.send_frame(**frame)
        assert_closed_with(client, 1002)
    assert_released(server, redis_server)
    assert_serves_websockets(server)


def test_length_with_the_top_bit_set_is_refused(server, redis_server):
    """A 64-bit length must have its most significant bit clear (section 5.2): refused at
    the header with 1002 (a protocol error, not a size), without waiting for a payload."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_raw(struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + b"\x00\x00\x00\x00")
        assert_closed_with(client, 1002)
    assert_released(server, redis_server)


@pytest.mark.parametrize("payload", [b"", b"x"], ids=["empty fragments", "one-byte fragments"])
def test_endless_fragments_close_1009_and_the_worker_keeps_serving(server, redis_server, payload):
    """A first frame, then up to 1,000,000 continuation frames that never end the message:
    1009 after MAX_FRAGMENTS of them (the client stops sending when it reads the close)."""
    fragment = encode_client_frame(CONTINUATION, payload, fin=False)
    with RawClient(server.port, PUBLISHER, timeout=30) as client:
        client.send_frame(BINARY, b"start", fin=False)
        data = memoryview(fragment * 1_000_000)
        client.sock.setblocking(False)
        # Send until everything is out, or the server answers (its close frame is readable).
        while data:
            readable, writable, _ = select.select([client.sock], [client.sock], [], 30)
            if readable or not writable:
                break
            try:
                data = data[client.sock.send(data[:65536]) :]
            except BlockingIOError:
                continue
            except ConnectionError:
                break
        client.sock.setblocking(True)
        client.sock.settimeout(30)
        close, _ = client.read_until_close()
        assert close.close_code == 1009, close
        assert "fragments" in close.close_reason
    assert_released(server, redis_server)
    assert_serves_websockets(server)


@pytest.mark.parametrize(
    "code", [1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4999]
)
def test_valid_close_code_is_echoed(server, redis_server, code):
    """Every code a peer may send (7.4.1, 7.4.2) is accepted and echoed back."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_close(code, "r" * 123)  # the longest reason a control frame holds
        assert_closed_with(client, code)
    assert_released(server, redis_server)


def test_frames_after_the_close_frame_are_ignored(server, redis_server):
    """Nothing a client sends after its close frame is published (section 1.4)."""
    with server.connect("/ws/foo?subscribe-broadcast") as listener:
        with RawClient(server.port, PUBLISHER) as client:
            client.send_raw(
                b"".join(
                    [
                        encode_client_frame(CLOSE, struct.pack("!H", 1000)),
                        encode_client_frame(TEXT, b"after close"),
                        encode_client_frame(PING, b"after close"),
                    ]
                )
            )
            close, before = client.read_until_close()
            assert close.close_code == 1000 and before == []
        with pytest.raises(TimeoutError):
            listener.recv(timeout=0.5)
    assert_released(server, redis_server)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_empty_message_is_a_message(server, opcode):
    """An empty text or binary message is relayed as an empty message of its type."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_frame(opcode, b"")
        frame = client.read_frame()
        assert (frame.fin, frame.payload) == (True, b"")
        # The type survives Redis: empty binary is not turned into empty text.
        assert frame.opcode == opcode


def test_ten_thousand_fragments_make_one_message(server):
    """10,000 one-byte fragments, sent at once, are reassembled into one message."""
    payload = bytes(range(256)) * 39 + bytes(range(16))  # 10,000 bytes, not UTF-8
    frames = [(BINARY if i == 0 else CONTINUATION, payload[i : i + 1]) for i in range(10_000)]
    with RawClient(server.port, PUBLISHER) as client:
        client.send_raw(
            b"".join(
                encode_client_frame(op, part, fin=(i == len(frames) - 1))
                for i, (op, part) in enumerate(frames)
            )
        )
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (BINARY, payload)
