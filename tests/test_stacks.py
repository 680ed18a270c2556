"""The same end-to-end scenarios on every deployment stack, each one real processes.

Stacks: gevent's pywsgi; gunicorn with ws4redis_gevent.gunicorn.GeventWebSocketWorker; uWSGI
with gevent behind its http router (``--http --http-websockets``) and speaking HTTP itself
(``--http-socket``); and nginx, configured as docs/deployment.rst says, in front of gunicorn,
of uWSGI over HTTP and of uWSGI over ``uwsgi_pass``. Each stack is started once per module (and
once more with short keepalive timers) and serves tests/gunicorn_app.py with one worker, so
``/_stats`` describes the process holding the websockets.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from channel_monitor import ChannelMonitor
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
from redis_server import RedisServer
from stacks import DIRECT_STACKS, NGINX_STACKS, ROOT, Stack, missing_binary, start_stack

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

STACKS = DIRECT_STACKS + NGINX_STACKS
LIMIT = 65536  # max_message_size: a message at the limit crosses routers in several reads
HEARTBEAT = "--heartbeat--"
KEEPALIVE = {
    "heartbeat": HEARTBEAT,
    "heartbeat_interval": 0.3,
    "ping_interval": 0.3,
    "ping_timeout": 0.3,
}


def running_stack(kind: str, redis_server: RedisServer, **options) -> Iterator[Stack]:
    reason = missing_binary(kind)
    if reason:
        pytest.skip(reason)
    if not redis_server.running:
        redis_server.start()
    stack = start_stack(kind, {"connection": redis_server.url, **options})
    yield stack
    stack.stop()


@pytest.fixture(scope="module", params=STACKS)
def stack(request, redis_server) -> Iterator[Stack]:
    yield from running_stack(request.param, redis_server, max_message_size=LIMIT)


@pytest.fixture(scope="module", params=STACKS)
def keepalive_stack(request, redis_server) -> Iterator[Stack]:
    """The stack with a heartbeat and protocol pings every 0.3 s."""
    yield from running_stack(request.param, redis_server, **KEEPALIVE)


@pytest.fixture
def facility(redis_url) -> str:
    """A facility of this test only (the database is flushed too)."""
    return f"f{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def assert_released(stack: Stack) -> None:
    """No websocket and no hub subscription is left in the server once clients are gone."""

    def released() -> bool:
        stats = stack.stats()
        return stats["websockets"] == 0 and stats["channels"] == {}

    wait_for(released, timeout=10)


def assert_closed_with(client: RawClient, code: int) -> None:
    close, _ = client.read_until_close()
    assert close.close_code == code, close
    close.close_reason  # noqa: B018 - must be UTF-8
    assert client.reaches_eof()


# -- fan-out and echo ----------------------------------------------------------------------


def test_broadcast_reaches_every_subscriber(stack, facility, redis_client):
    """A message published on Redis reaches every subscriber; plain HTTP reaches the app."""
    path = f"/ws/{facility}?subscribe-broadcast"
    with stack.connect(path) as first, stack.connect(path) as second:
        assert redis_client.publish(f"broadcast:{facility}", "hello ✓") >= 1
        assert first.recv(timeout=5) == "hello ✓"
        assert second.recv(timeout=5) == "hello ✓"
    assert stack.get("/plain") == (200, b"app saw GET /plain")
    assert_released(stack)


def test_publish_reaches_others_and_echo_only_when_asked(stack, facility, redis_url):
    """A client's message reaches the others; it gets it back itself only with ``&echo``."""
    base = f"/ws/{facility}?subscribe-broadcast&publish-broadcast"
    with (
        ChannelMonitor(redis_url, f"broadcast:{facility}") as monitor,
        stack.connect(base) as quiet,
        stack.connect(base + "&echo") as echoing,
    ):
        quiet.send("from quiet")
        assert monitor.payloads(1) == [b"from quiet"]
        echoing.send("from echoing")
        assert echoing.recv(timeout=5) == "from quiet"
        assert echoing.recv(timeout=5) == "from echoing"
        # Redis keeps the order of a channel: had ``quiet`` got its own message back, it
        # would come before the other one.
        assert quiet.recv(timeout=5) == "from echoing"
    assert_released(stack)


def test_burst_is_relayed_whole_and_in_order(stack, facility, redis_client):
    """80 frames in one write, then 300 messages from a Redis pipeline: none stalls in a buffer."""
    with (
        stack.connect(f"/ws/{facility}?subscribe-broadcast") as listener,
        RawClient(stack.port, f"/ws/{facility}?publish-broadcast") as sender,
    ):
        sender.send_raw(
            b"".join(encode_client_frame(TEXT, f"frame {i}".encode()) for i in range(80))
        )
        assert [listener.recv(timeout=5) for _ in range(80)] == [f"frame {i}" for i in range(80)]
        with redis_client.pipeline(transaction=False) as pipe:
            for i in range(300):
                pipe.publish(f"broadcast:{facility}", f"message {i}")
            pipe.execute()
        assert [listener.recv(timeout=5) for _ in range(300)] == [
            f"message {i}" for i in range(300)
        ]
    assert_released(stack)


# -- frames --------------------------------------------------------------------------------


def test_text_and_binary_keep_their_frame_type(stack, facility, redis_client):
    """Text comes back as a text frame, non-UTF-8 bytes as a binary frame, to raw and strict
    clients, from a client or from Redis."""
    path = f"/ws/{facility}?subscribe-broadcast&publish-broadcast&echo"
    with (
        stack.connect(f"/ws/{facility}?subscribe-broadcast") as listener,
        RawClient(stack.port, path) as client,
    ):
        client.send_frame(TEXT, "ünïcode".encode())
        assert _data_frame(client) == (TEXT, "ünïcode".encode())
        client.send_frame(BINARY, bytes(range(256)))
        assert _data_frame(client) == (BINARY, bytes(range(256)))
        assert listener.recv(timeout=5) == "ünïcode"
        assert listener.recv(timeout=5) == bytes(range(256))
        redis_client.publish(f"broadcast:{facility}", b"\x80\x81 from redis")
        assert listener.recv(timeout=5) == b"\x80\x81 from redis"
        assert _data_frame(client) == (BINARY, b"\x80\x81 from redis")
    assert_released(stack)


def _data_frame(client: RawClient) -> tuple[int, bytes]:
    frame = client.read_frame()
    assert frame.fin
    return frame.opcode, frame.payload


def test_fragmented_messages_are_reassembled_and_kept_apart(stack, facility):
    """Two clients interleave fragmented messages (with a ping inside one): each is published
    whole, nothing mixes across connections, and a one-byte NUL message is just that."""
    path = f"/ws/{facility}?publish-broadcast"
    with (
        stack.connect(f"/ws/{facility}?subscribe-broadcast") as listener,
        RawClient(stack.port, path) as one,
        RawClient(stack.port, path) as two,
    ):
        one.send_frame(TEXT, b"one: Hel", fin=False)
        two.send_frame(BINARY, b"\xff two", fin=False)
        one.send_frame(PING, b"inside")
        one.send_frame(CONTINUATION, b"lo, w\xc3", fin=False)
        two.send_frame(CONTINUATION, b" \xfe", fin=True)
        pong = one.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"inside")
        one.send_frame(CONTINUATION, b"\xa9rld", fin=True)
        # Two connections: the server may publish their messages in either order.
        received = {listener.recv(timeout=5), listener.recv(timeout=5)}
        assert received == {b"\xff two \xfe", "one: Hello, wérld"}
        one.send_frame(TEXT, b"\x00")
        assert listener.recv(timeout=5) == "\x00"
    assert_released(stack)


# -- limits and close codes ----------------------------------------------------------------


def test_message_at_the_limit_passes_and_one_byte_more_closes_1009(stack, facility):
    """max_message_size bytes are relayed; one more, in one frame or in fragments, closes 1009."""
    path = f"/ws/{facility}?subscribe-broadcast&publish-broadcast&echo"
    with RawClient(stack.port, path) as client:
        client.send_frame(BINARY, b"\xff" * LIMIT)
        assert _data_frame(client) == (BINARY, b"\xff" * LIMIT)
        client.send_frame(BINARY, b"\xff" * (LIMIT + 1))
        assert_closed_with(client, 1009)
    with RawClient(stack.port, path) as client:
        client.send_frame(TEXT, b"a" * LIMIT, fin=False)
        client.send_frame(CONTINUATION, b"a", fin=True)
        assert_closed_with(client, 1009)
    assert_released(stack)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([(CLOSE, b"\x0f\xa1going home")], 4001),  # the client's code comes back
        ([(CLOSE, b"")], 1000),  # no status: answered with 1000
        ([(TEXT, b"\xff\xfe")], 1007),  # invalid UTF-8
        ([(0x3, b"reserved opcode")], 1002),  # protocol violation
    ],
    ids=["4001", "empty", "invalid utf-8 1007", "protocol error 1002"],
)
def test_close_codes(stack, facility, frames, expected):
    """Close frames carry the right status code, whoever starts the closing handshake."""
    with RawClient(stack.port, f"/ws/{facility}?subscribe-broadcast&publish-broadcast") as client:
        for opcode, payload in frames:
            client.send_frame(opcode, payload)
        assert_closed_with(client, expected)
    assert_released(stack)


def test_strict_client_sees_its_close_code_and_reason(stack, facility):
    """The websockets library, closing with 4001, gets a valid close frame with 4001 back."""
    with stack.connect(f"/ws/{facility}?subscribe-broadcast") as ws:
        ws.close(4001, "done here")
        received = ws.protocol.close_rcvd
    assert received is not None and received.code == 4001
    assert_released(stack)


def test_websockets_leave_no_descriptor_behind(stack, facility):
    """Websockets closed by the client, by the server (1009) or dropped without a close leave
    no file descriptor behind in the server (the uWSGI backend duplicates the connection's)."""

    def open_and_close_three(number: int) -> None:
        # A facility per round: no stored message is replayed to the next round's clients.
        path = f"/ws/{facility}-{number}?subscribe-broadcast&publish-broadcast&echo"
        with stack.connect(path) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
        with RawClient(stack.port, path) as client:
            client.send_frame(BINARY, b"\xff" * (LIMIT + 1))
            assert_closed_with(client, 1009)
        with RawClient(stack.port, path) as client:
            client.send_frame(TEXT, b"then gone")  # and the socket closes, no close frame
        assert_released(stack)

    open_and_close_three(0)  # warms up connection pools
    baseline = stack.stats()["fds"]
    for number in range(1, 6):
        open_and_close_three(number)
    wait_for(lambda: stack.stats()["fds"] <= baseline, timeout=10)


# -- persisted messages --------------------------------------------------------------------


def test_persisted_message_is_replayed_first(stack, facility, redis_url, redis_client):
    """A message published with an expiry reaches a client connecting later, before live ones."""
    publisher = RedisPublisher(
        facility=facility, broadcast=True, settings=Settings(connection=redis_url)
    )
    publisher.publish_message("stored", expire=60)
    with stack.connect(f"/ws/{facility}?subscribe-broadcast") as ws:
        assert ws.recv(timeout=5) == "stored"
        redis_client.publish(f"broadcast:{facility}", "live")
        assert ws.recv(timeout=5) == "live"
    assert_released(stack)


# -- keepalive -----------------------------------------------------------------------------


def test_ping_with_payload_gets_its_payload_back(stack, facility):
    """Clients' keepalive pings carry payloads: the pong must carry the same one."""
    with RawClient(stack.port, f"/ws/{facility}?subscribe-broadcast") as client:
        client.send_frame(PING, b"keepalive 42")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"keepalive 42")
    with stack.connect(f"/ws/{facility}?subscribe-broadcast") as ws:
        assert ws.ping(b"\x00binary\xff payload").wait(5), "pong never matched the ping"
    assert_released(stack)


def test_heartbeat_is_sent_on_its_timer_and_never_published(keepalive_stack, facility, redis_url):
    """The server sends the heartbeat every heartbeat_interval; one a client sends is not
    published (the relay answers it, see tests/test_keepalive.py)."""
    path = f"/ws/{facility}?subscribe-broadcast&publish-broadcast"
    with (
        ChannelMonitor(redis_url, f"broadcast:{facility}") as monitor,
        keepalive_stack.connect(path) as ws,
    ):
        started = time.monotonic()
        received = [ws.recv(timeout=5) for _ in range(3)]  # the timer's, nothing else sent
        assert received == [HEARTBEAT] * 3
        assert time.monotonic() - started >= 0.5
        ws.send(HEARTBEAT)
        ws.send("marker")
        assert monitor.payloads(1) == [b"marker"]  # the heartbeat was not published before it


def test_client_answering_pings_outlives_them_and_silent_one_is_dropped(
    keepalive_stack, facility, redis_client
):
    """Server pings every 0.3 s: a client that answers stays open and receives; a raw client
    that never answers is pinged, then dropped."""
    with keepalive_stack.connect(f"/ws/{facility}?subscribe-broadcast") as ws:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert ws.recv(timeout=5) == HEARTBEAT  # and no close
        redis_client.publish(f"broadcast:{facility}", "still here")
        while (message := ws.recv(timeout=5)) == HEARTBEAT:
            pass
        assert message == "still here"
    with RawClient(keepalive_stack.port, f"/ws/{facility}?subscribe-broadcast") as client:
        opcodes = []
        with pytest.raises(EOFError):
            while True:
                opcodes.append(client.read_frame().opcode)
        assert PING in opcodes
    assert_released(keepalive_stack)


def test_deployment_doc_names_tests_that_exist():
    """Every test docs/deployment.rst cites as evidence exists (renaming one updates the doc)."""
    doc = (ROOT / "docs" / "deployment.rst").read_text()
    cited = set(re.findall(r"``(test_\w+)``", doc))
    files = set(re.findall(r"``tests/(test_\w+\.py)``", doc))
    sources = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    assert cited and files
    assert {name for name in cited if f"def {name}(" not in sources} == set()
    assert {name for name in files if not (ROOT / "tests" / name).exists()} == set()
