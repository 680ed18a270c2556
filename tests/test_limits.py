"""Limits, each with a safe default and a clear outcome, tried against a real server process.

Message size (close 1009), publish rate (close 1008 "publish rate exceeded"), websockets per
worker (503 before the upgrade), handshake timeout (the connection is dropped, 408 when part of
a request had arrived), slow consumers (a client that stops reading is closed with 1008 once
WS4REDIS_MAX_PENDING_MESSAGES messages wait for it; the others are not held back).
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import struct
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from conftest import wait_for
from raw_client import CLOSE, handshake_request
from websockets.exceptions import ConnectionClosedError, InvalidStatus

pytestmark = pytest.mark.integration

ECHO = "/ws/news?subscribe-broadcast&publish-broadcast&echo"
LISTENER = "/ws/news?subscribe-broadcast"


def assert_echoes(server) -> None:
    """A new websocket opens and relays through Redis (on a new facility: nothing replayed)."""
    word = uuid.uuid4().hex
    with server.connect(f"/ws/{word}?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send(word)
        assert ws.recv(timeout=5) == word


def close_code(ws) -> tuple[int, str]:
    """Wait for the server to close ``ws``; the code and reason it sent."""
    with pytest.raises(ConnectionClosedError):
        while True:
            ws.recv(timeout=5)
    received = ws.protocol.close_rcvd
    assert received is not None, "closed without a close frame"
    return received.code, received.reason


# -- message size --------------------------------------------------------------------------


def test_default_message_size_limit_is_one_mebibyte(server):
    """By default a 1 MiB message passes, one byte more closes the websocket with 1009."""
    with server.connect(ECHO, max_size=None) as ws:
        ws.send(b"\xff" * (1 << 20))
        assert len(ws.recv(timeout=10)) == 1 << 20
        ws.send(b"\xff" * ((1 << 20) + 1))
        assert close_code(ws)[0] == 1009
    assert_echoes(server)


# -- publish rate --------------------------------------------------------------------------


def test_publishing_faster_than_rate_and_burst_closes_1008(start_server):
    """Past the burst (the rate refills nothing meanwhile), the publisher is closed with 1008
    'publish rate exceeded'; exactly the burst reached the listeners, in order."""
    server = start_server(publish_rate=0.001, publish_burst=5)
    with server.connect(LISTENER) as listener, server.connect(ECHO.replace("&echo", "")) as ws:
        for n in range(20):
            ws.send(f"message {n}")
        assert close_code(ws) == (1008, "publish rate exceeded")
        received = [listener.recv(timeout=5) for _ in range(5)]
        assert received == [f"message {n}" for n in range(5)]
        with pytest.raises(TimeoutError):
            listener.recv(timeout=0.5)  # nothing past the burst was published
    assert_echoes(server)


def test_publishing_at_the_rate_is_never_closed(start_server):
    """A client that publishes no faster than the rate keeps its websocket, burst or not."""
    rate = 20.0
    server = start_server(publish_rate=rate, publish_burst=1)
    with server.connect(ECHO) as ws:
        for n in range(8):
            ws.send(f"paced {n}")
            assert ws.recv(timeout=5) == f"paced {n}"
            with pytest.raises(TimeoutError):
                ws.recv(timeout=2 / rate)  # the pause that refills the bucket


def test_heartbeats_do_not_count_against_the_rate(start_server):
    """Heartbeats are answered, never published, and never spend the publish budget."""
    server = start_server(publish_rate=0.001, publish_burst=2, heartbeat="--beat--")
    with server.connect(ECHO) as ws:
        for _ in range(10):
            ws.send("--beat--")
            assert ws.recv(timeout=5) == "--beat--"
        ws.send("real")
        assert ws.recv(timeout=5) == "real"


def test_no_publish_rate_means_no_limit(start_server):
    """WS4REDIS_PUBLISH_RATE = None: 500 messages at once all go through."""
    server = start_server(publish_rate=None)
    with server.connect(LISTENER) as listener, server.connect(ECHO.replace("&echo", "")) as ws:
        for n in range(500):
            ws.send(str(n))
        assert [listener.recv(timeout=5) for _ in range(500)] == [str(n) for n in range(500)]


# -- websockets per worker -----------------------------------------------------------------


def test_websockets_over_max_connections_get_503_before_the_upgrade(start_server):
    """With max_connections=3, a 4th websocket gets 503 with a reason and nothing subscribed;
    plain HTTP is still served, and a slot freed is usable again."""
    server = start_server(max_connections=3)
    opened = [server.connect(f"/ws/slot{n}?subscribe-broadcast", legacy=True) for n in range(3)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            server.connect("/ws/extra?subscribe-broadcast")
        response = refused.value.response
        assert response.status_code == 503
        assert b"too many websockets" in response.body
        assert "broadcast:extra" not in server.stats()["channels"]
        with urllib.request.urlopen(server.http_url + "/plain", timeout=5) as plain:
            assert plain.status == 200
        opened.pop().close()
        opened.append(wait_for(lambda: _attempt(server.connect, LISTENER), timeout=10))
        assert opened[-1].ping().wait(5)
        with pytest.raises(InvalidStatus):
            server.connect(LISTENER)
    finally:
        for ws in opened:
            ws.close()


def test_refused_handshakes_do_not_hold_slots(start_server):
    """Handshakes refused for any reason (400, 403, 404, 503) give their slot back."""
    server = start_server(max_connections=2, allow_missing_origin=False)
    for _ in range(10):
        with pytest.raises(InvalidStatus):
            server.connect(LISTENER)  # no Origin: 403
        with pytest.raises(InvalidStatus):
            server.connect("/ws/", origin=f"http://127.0.0.1:{server.port}")  # 404
    origin = f"http://127.0.0.1:{server.port}"
    with server.connect(LISTENER, origin=origin), server.connect(LISTENER, origin=origin):
        for _ in range(5):
            with pytest.raises(InvalidStatus) as refused:
                server.connect(LISTENER, origin=origin)
            assert refused.value.response.status_code == 503
    with server.connect(LISTENER, origin=origin), server.connect(LISTENER, origin=origin):
        pass


def _attempt(function, *args):
    """``function(*args, legacy=True)``, or None if it raised."""
    try:
        return function(*args, legacy=True)
    except Exception:
        return None


# -- handshake timeout ---------------------------------------------------------------------


def read_until_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sends until it closes the connection; fails if it stays open."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_silent_connection_is_dropped_after_the_handshake_timeout(start_server):
    """A client that connects and sends nothing is disconnected, without a response."""
    server = start_server(handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert read_until_eof(sock) == b""
    assert_echoes(server)


def test_incomplete_request_gets_408(start_server):
    """A request whose headers never end gets 408 Request Timeout, then the connection ends."""
    server = start_server(handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /ws/news?subscribe-broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        response = read_until_eof(sock)
    assert response.startswith(b"HTTP/1.1 408 ")
    assert response.endswith(b"handshake timeout\n")


@pytest.mark.parametrize(
    ("sent_at_once", "answer"),
    [(b"", b""), (b"GET /ws/news HTTP/1.1\r\n", b"HTTP/1.1 408 ")],
    ids=["request line dribbled: dropped", "headers dribbled: 408"],
)
def test_dribbling_bytes_does_not_extend_the_deadline(start_server, sent_at_once, answer):
    """One byte every 50 ms: the deadline covers the whole request, so the server ends the
    connection long before the 10 s the dribble would take (with 408 once the request line
    had arrived)."""
    server = start_server(handshake_timeout=0.5)
    dribble = b"GET /ws/news HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    dribble = dribble[len(sent_at_once) :]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(sent_at_once)
        for sent, byte in enumerate(dribble):  # noqa: B007 - read after the loop
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(bytes([byte]))
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
        else:
            pytest.fail("the server waited for the whole dribble")
        assert sent < len(dribble) - 1
        assert read_until_eof(sock).startswith(answer)


def test_open_websocket_is_not_subject_to_the_handshake_timeout(start_server):
    """The deadline ends with the request: a quiet websocket outlives it many times over."""
    server = start_server(handshake_timeout=0.3)
    with server.connect(ECHO) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


def test_idle_sockets_are_reaped_while_others_are_served(start_server):
    """200 connections that send nothing do not stop a websocket from opening, and are all
    closed by the deadline, giving their file descriptors back."""
    server = start_server(handshake_timeout=1.0)
    assert_echoes(server)  # the Redis connections are open from now on
    baseline = server.stats()["fds"]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    try:
        assert_echoes(server)
        for sock in idle:
            assert read_until_eof(sock) == b""
        wait_for(lambda: server.stats()["fds"] <= baseline, timeout=10)
    finally:
        for sock in idle:
            sock.close()


# -- slow consumers ------------------------------------------------------------------------

READERS = 99
MAX_PENDING = 50
FILL = [b"\xfe" + struct.pack("!I", n) + b"f" * (1 << 20) for n in range(16)]  # 16 MiB
STALLED = "/ws/news?subscribe-broadcast&subscribe-user&token=t-john"


def stalled_client(port: int) -> socket.socket:
    """A websocket on a socket with a tiny receive buffer, which the test does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    sock.sendall(handshake_request(STALLED, base64.b64encode(os.urandom(16)).decode()))
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)  # one byte at a time: nothing after the 101 is consumed
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


class FrameReader:
    """Reads server frames from a socket whose handshake was read by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def _exactly(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) < size:
            raise EOFError
        return data

    def read(self) -> tuple[int, bytes]:
        """The opcode and payload of the next frame; EOFError at the end of the stream."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def until_close(self) -> list[tuple[int, bytes]]:
        """Every frame until a close frame (included) or the end of the stream."""
        frames = []
        with contextlib.suppress(EOFError, ConnectionResetError):
            while not frames or frames[-1][0] != CLOSE:
                frames.append(self.read())
        return frames


def open_readers(server, count: int) -> list:
    with ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(lambda _: server.connect(LISTENER, max_queue=None, legacy=True), range(count))
        )


@pytest.fixture
def slow_consumer_server(start_server):
    # The byte bound (test_floods.py) is set well above the 16 MiB of FILL: these tests are
    # about the message count.
    return start_server(
        max_pending_messages=MAX_PENDING,
        max_pending_bytes=64 << 20,
        process_request="ws_callbacks.token_auth",
        expire=0,
        publish_rate=None,
    )


def publish_fill_then_broadcast(redis_url: str, broadcast: list[bytes]) -> None:
    """16 MiB to the stalled client only (more than the kernel buffers hold), then
    ``broadcast`` to everyone."""
    with redis.Redis.from_url(redis_url) as client, client.pipeline(transaction=False) as pipe:
        for payload in FILL:
            pipe.publish("user:john:news", payload)
        for payload in broadcast:
            pipe.publish("broadcast:news", payload)
        pipe.execute()


def test_slow_consumer_is_closed_1008_and_others_get_everything(slow_consumer_server, redis_url):
    """One client among 100 stops reading. Once MAX_PENDING_MESSAGES wait for it, it is
    closed with 1008 'too slow' after a gap-free prefix of its messages; the 99 others receive
    all 200 messages in order, while the slow one is still not reading (so it held nobody up).
    """
    server = slow_consumer_server
    broadcast = [f"news {n}".encode() for n in range(200)]
    readers = open_readers(server, READERS)
    stalled = stalled_client(server.port)
    try:
        wait_for(lambda: server.stats()["websockets"] == READERS + 1)
        publish_fill_then_broadcast(redis_url, broadcast)
        expected = [payload.decode() for payload in broadcast]
        for reader in readers:
            assert [reader.recv(timeout=10) for _ in expected] == expected
        # Only now does the slow client read what the server sent it.
        frames = FrameReader(stalled).until_close()
    finally:
        stalled.close()
        for reader in readers:
            reader.close()
    *messages, (opcode, payload) = frames
    assert opcode == CLOSE, f"no close frame after {len(messages)} messages"
    assert struct.unpack("!H", payload[:2])[0] == 1008
    assert payload[2:] == b"too slow"
    received = [data for _, data in messages]
    everything = FILL + broadcast
    assert received == everything[: len(received)], "not a gap-free prefix"
    assert len(received) < len(everything), "nothing was dropped"
    wait_for(lambda: server.stats()["websockets"] == 0)


def test_burst_larger_than_the_limit_does_not_close_fast_readers(slow_consumer_server, redis_url):
    """A burst of 10 x MAX_PENDING_MESSAGES messages, arriving from Redis at once, reaches
    readers that keep up: the limit counts messages a blocked socket could not take, not
    messages delivered within one burst."""
    server = slow_consumer_server
    expected = [f"burst {n}" for n in range(10 * MAX_PENDING)]
    readers = open_readers(server, 5)
    try:
        wait_for(lambda: server.stats()["websockets"] == 5)
        with redis.Redis.from_url(redis_url) as client, client.pipeline(False) as pipe:
            for payload in expected:
                pipe.publish("broadcast:news", payload)
            pipe.execute()
        for reader in readers:
            assert [reader.recv(timeout=10) for _ in expected] == expected
    finally:
        for reader in readers:
            reader.close()


def test_slow_consumer_under_the_limit_keeps_everything(slow_consumer_server, redis_url):
    """A client that pauses while fewer than MAX_PENDING_MESSAGES wait for it is not closed:
    when it reads again it gets every message, in order, and its websocket still works."""
    server = slow_consumer_server
    broadcast = [f"news {n}".encode() for n in range(MAX_PENDING - len(FILL) - 2)]
    stalled = stalled_client(server.port)
    try:
        wait_for(lambda: server.stats()["websockets"] == 1)
        publish_fill_then_broadcast(redis_url, broadcast)
        reader = FrameReader(stalled)
        received = [reader.read()[1] for _ in FILL + broadcast]
        assert received == FILL + broadcast
        with redis.Redis.from_url(redis_url) as client:
            client.publish("broadcast:news", "later")
        assert reader.read() == (0x1, b"later")
    finally:
        stalled.close()
