"""permessage-deflate end to end: real servers (gevent's pywsgi, uWSGI), a real Redis, the
websockets library's client and raw clients."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator

import pytest
import redis
from raw_client import BINARY, TEXT, RawClient
from stacks import Stack, missing_binary, start_stack

from ws4redis_gevent.outbox import Outbox
from ws4redis_gevent.outgoing import Outgoing
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"  # Chromium's
MESSAGE = json.dumps({"event": "tick", "rows": [{"id": i, "price": 1.25} for i in range(30)]})


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def client_deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.fixture(scope="module", params=["gevent", "uwsgi-http-socket"])
def stack(request, redis_server) -> Iterator[Stack]:
    reason = missing_binary(request.param)
    if reason:
        pytest.skip(reason)
    if not redis_server.running:
        redis_server.start()
    options = {"connection": redis_server.url, "compression": True, "max_message_size": 65536}
    stack = start_stack(request.param, options)
    yield stack
    stack.stop()


@pytest.fixture
def facility() -> str:
    return f"deflate-{uuid.uuid4().hex[:8]}"


def test_websockets_client_negotiates_and_round_trips(stack, facility):
    """The websockets library's default offer is accepted; text and binary messages, compressed
    both ways with the client's context takeover, come back whole."""
    path = f"/ws/{facility}?subscribe-broadcast&publish-broadcast&echo"
    with stack.connect(path) as client:
        extensions = client.response.headers["Sec-WebSocket-Extensions"]
        assert extensions.startswith("permessage-deflate; server_no_context_takeover")
        for message in [MESSAGE, MESSAGE, "x", b"\x00\xff" * 500]:
            client.send(message)
            assert client.recv(timeout=5) == message


def test_fanout_frame_is_compressed_and_identical_for_every_socket(stack, facility, redis_url):
    """Each subscriber that negotiated compression gets the same compressed frame (RSV1 set)
    carrying the message; one that did not gets it plain."""
    path = f"/ws/{facility}?subscribe-broadcast"
    clients = [RawClient(stack.port, path, extensions=DEFLATE_OFFER) for _ in range(3)]
    plain = RawClient(stack.port, path)
    try:
        assert all("permessage-deflate" in c.headers["sec-websocket-extensions"] for c in clients)
        assert "sec-websocket-extensions" not in plain.headers
        with redis.Redis.from_url(redis_url) as connection:
            publisher = RedisPublisher(facility=facility, broadcast=True, connection=connection)
            publisher.publish_message(MESSAGE)
        frames = [c.read_frame() for c in clients]
        assert {(f.opcode, f.rsv, f.payload) for f in frames} == {(TEXT, 4, frames[0].payload)}
        assert len(frames[0].payload) < len(MESSAGE) / 2
        assert inflate(frames[0].payload) == MESSAGE.encode()
        frame = plain.read_frame()
        assert (frame.opcode, frame.rsv, frame.payload) == (TEXT, 0, MESSAGE.encode())
    finally:
        for client in [*clients, plain]:
            client.close()


def test_decompression_bomb_closes_1009_and_the_worker_keeps_serving(stack, facility):
    """A small compressed frame that inflates past max_message_size: 1009, at the limit."""
    path = f"/ws/{facility}?publish-broadcast"
    with RawClient(stack.port, path, extensions=DEFLATE_OFFER) as client:
        bomb = client_deflate(bytes(8 << 20))
        assert len(bomb) < 10_000
        client.send_frame(BINARY, bomb, rsv=4)
        close, _ = client.read_until_close()
        assert close.close_code == 1009
    with stack.connect(f"/ws/{facility}?subscribe-broadcast&publish-broadcast&echo") as client:
        client.send(MESSAGE)
        assert client.recv(timeout=5) == MESSAGE


def test_compression_off_means_no_extension(start_server):
    server = start_server(compression=False)
    with RawClient(server.port, "/ws/x?subscribe-broadcast", extensions=DEFLATE_OFFER) as client:
        assert "sec-websocket-extensions" not in client.headers
        client.send_frame(TEXT, client_deflate(b"hello"), rsv=4)
        close, _ = client.read_until_close()
        assert close.close_code == 1002  # RSV1 without the extension


def test_a_message_is_compressed_once_for_all_outboxes():
    """Unit level: outboxes of websockets with the same window share one compressed frame."""
    message = Outgoing(MESSAGE.encode())
    outboxes = [Outbox() for _ in range(3)]
    for outbox in outboxes:
        outbox.window_bits = 15
    frames = [outbox.encode([message]) for outbox in outboxes]
    assert frames[0] is frames[1] is frames[2]
    assert frames[0][0] == 0xC1 and len(frames[0]) < len(message.frame)


def test_settings_validate_compression_options():
    from ws4redis_gevent.exceptions import ImproperlyConfigured

    assert Settings(compression=False, compression_window_bits=9).compression_window_bits == 9
    for bad in (7, 16, "12", True):
        with pytest.raises(ImproperlyConfigured, match="COMPRESSION_WINDOW_BITS"):
            Settings(compression_window_bits=bad)
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_COMPRESSION"):
        Settings(compression="yes")
