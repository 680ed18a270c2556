"""What uWSGI's own websocket API (uwsgi.websocket_recv/send, uWSGI 2.0) cannot do, and why
the uWSGI backend takes the connection's socket over instead (docs/deployment.rst).

``application`` below runs *inside* uWSGI and uses only the native API; each test drives it
with a raw client and asserts the limitation. Should a uWSGI release lift one, its test fails:
the documentation, and maybe the backend's design, then need another look.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from raw_client import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient
from stacks import Stack, make_stack, missing_binary, start_uwsgi

pytestmark = pytest.mark.integration

MAX_SIZE_KB = 1  # uWSGI's --websockets-max-size, in KiB


def application(environ, start_response):
    """Inside uWSGI: ``/describe`` answers each message with the repr of what websocket_recv
    returned; ``/echo`` sends it back with websocket_send; ``/other-greenlet`` reports what
    websocket_send does when called from a second greenlet."""
    import gevent
    import uwsgi

    path = environ["PATH_INFO"]
    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"native"]
    uwsgi.websocket_handshake()
    if path == "/other-greenlet":
        outcome = gevent.spawn(_send_from_greenlet, uwsgi).get()
        uwsgi.websocket_send(outcome.encode())
    while True:
        try:
            message = uwsgi.websocket_recv()
        except OSError:
            return []
        if path == "/echo":
            uwsgi.websocket_send(message)
        else:
            uwsgi.websocket_send(repr(message).encode())


def _send_from_greenlet(uwsgi) -> str:
    try:
        uwsgi.websocket_send(b"from another greenlet")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "sent"


@pytest.fixture(scope="module")
def native() -> Iterator[Stack]:
    reason = missing_binary("uwsgi")
    if reason:
        pytest.skip(reason)
    stack = make_stack("uwsgi-native", {})
    try:
        start_uwsgi(
            stack,
            "http-socket",
            "--websockets-max-size",
            str(MAX_SIZE_KB),
            app="test_uwsgi_native_api:application",
        )
        assert stack.get("/plain") == (200, b"native")
        yield stack
    finally:
        stack.stop()


def described(client: RawClient) -> str:
    frame = client.read_frame()
    assert frame.opcode == TEXT, frame
    return frame.payload.decode()


def test_native_calls_only_work_in_the_request_greenlet(native):
    """websocket_send from a second greenlet raises: the relay's writer greenlet and the hub's
    fan-out could not use the API."""
    with RawClient(native.port, "/other-greenlet") as client:
        outcome = described(client)
    assert outcome.startswith("SystemError"), outcome
    assert "only from the main callable" in outcome


def test_native_recv_cannot_tell_binary_from_text(native):
    """A text and a binary message come out of websocket_recv alike, and websocket_send sends
    non-UTF-8 bytes as a text frame (which strict clients reject with 1007)."""
    with RawClient(native.port, "/describe") as client:
        client.send_frame(TEXT, b"same")
        client.send_frame(BINARY, b"same")
        assert [described(client), described(client)] == ["b'same'", "b'same'"]
    with RawClient(native.port, "/echo") as client:
        client.send_frame(BINARY, b"\xff\x00")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (TEXT, b"\xff\x00")


def test_native_fragment_reads_as_a_nul_message(native):
    """A non-final fragment comes out as b'\\x00', exactly like a real one-byte NUL message."""
    with RawClient(native.port, "/describe") as client:
        client.send_frame(TEXT, b"ab", fin=False)
        client.send_frame(CONTINUATION, b"cd", fin=True)
        client.send_frame(TEXT, b"\x00")
        got = [described(client) for _ in range(3)]
    assert got == ["b'\\x00'", "b'abcd'", "b'\\x00'"]


def test_native_pong_drops_the_ping_payload(native):
    """A ping's payload does not come back in the pong: keepalive pings never match."""
    with RawClient(native.port, "/describe") as client:
        client.send_frame(PING, b"keepalive 42")
        frame = client.read_frame()
    assert (frame.opcode, frame.payload) == (PONG, b"")


def test_native_close_reply_has_no_status_code(native):
    """A close with 4001 is answered by a close frame without any status code."""
    with RawClient(native.port, "/describe") as client:
        client.send_close(4001, "bye")
        frame = client.read_frame()
    assert (frame.opcode, frame.payload) == (CLOSE, b"")


def test_native_size_limit_drops_without_1009(native):
    """A message over --websockets-max-size drops the connection with no close frame."""
    with RawClient(native.port, "/describe") as client:
        client.send_frame(BINARY, b"x" * (MAX_SIZE_KB * 1024 + 1))
        with pytest.raises(EOFError):
            client.read_frame()
