"""RFC 6455 as the gevent backend serves it, driven byte by byte from raw sockets.

Close handshakes carry their status code (gevent-websocket dropped it), text stays text and
binary stays binary, fragments are reassembled, limits and protocol violations close the
connection with the right code, and nothing is left behind in the server afterwards.
"""

from __future__ import annotations

import random
import struct
import uuid

import pytest
import redis
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
from websockets.exceptions import ConnectionClosedError

pytestmark = pytest.mark.integration

PUBLISHER = "/ws/foo?subscribe-broadcast&publish-broadcast&echo"
LISTENER = "/ws/foo?subscribe-broadcast"


def assert_released(server, redis_server) -> None:
    """No websocket, hub channel or Redis subscription is left once the clients are gone."""

    def released() -> bool:
        stats = server.stats()
        return stats["websockets"] == 0 and stats["channels"] == {}

    wait_for(released, timeout=10)
    wait_for(lambda: pubsub_channels(redis_server) == [], timeout=10)


def assert_serves_websockets(server) -> None:
    word = uuid.uuid4().hex
    with server.connect("/ws/check?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send(word)
        assert ws.recv(timeout=5) == word


def assert_closed_with(client: RawClient, code: int) -> str:
    """The server sends a close frame with ``code``, then ends the TCP connection."""
    close, _ = client.read_until_close()
    assert close.close_code == code, close
    reason = close.close_reason  # must decode as UTF-8
    assert client.reaches_eof()
    return reason


# -- the closing handshake -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [(1000, "bye", 1000), (1001, "", 1001), (4001, "custom", 4001), (None, "", 1000)],
    ids=["1000 bye", "1001", "4001", "empty payload"],
)
def test_client_close_is_answered_with_its_code(server, redis_server, code, reason, expected):
    """The close reply carries a 2-byte status code: the client's, or 1000 for an empty one."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_close(code, reason)
        close, before = client.read_until_close()
        assert before == []
        assert len(close.payload) >= 2, "close reply without a status code"
        assert close.close_code == expected
        close.close_reason  # noqa: B018 - must be UTF-8
        assert client.reaches_eof()
    assert_released(server, redis_server)


@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (4001, "done here")])
def test_strict_client_sees_close_code_echoed(server, redis_server, code, reason):
    """The websockets client, closing with a code, receives that code back."""
    with server.connect(PUBLISHER) as ws:
        ws.close(code, reason)
        received = ws.protocol.close_rcvd
    assert received is not None and received.code == code
    assert_released(server, redis_server)


def test_server_close_carries_code_and_utf8_reason(start_server, redis_server):
    """A close the server starts (message too big) has the code and a readable reason."""
    server = start_server(max_message_size=1024)
    with server.connect(PUBLISHER) as ws, pytest.raises(ConnectionClosedError) as caught:
        ws.send("x" * 2000)
        ws.recv(timeout=5)
    received = caught.value.rcvd
    assert received is not None and received.code == 1009
    assert isinstance(received.reason, str) and received.reason
    assert_released(server, redis_server)


# -- data frames ---------------------------------------------------------------------------


def test_text_stays_text_and_binary_stays_binary(server, redis_server):
    """Text is relayed as text, non-UTF-8 bytes as binary, to the sender and to listeners."""
    with server.connect(PUBLISHER) as ws, server.connect(LISTENER) as listener:
        ws.send("héllo ✓")
        assert ws.recv(timeout=5) == "héllo ✓"
        assert listener.recv(timeout=5) == "héllo ✓"
        ws.send(b"\xff\x00\xfe binary")
        assert ws.recv(timeout=5) == b"\xff\x00\xfe binary"
        assert listener.recv(timeout=5) == b"\xff\x00\xfe binary"
    assert_released(server, redis_server)


def test_frame_opcodes_on_the_wire(server, redis_server):
    """On the wire: a text frame comes back with opcode 1, non-UTF-8 binary with opcode 2."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_frame(TEXT, "ünïcode".encode())
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (True, TEXT, "ünïcode".encode())
        client.send_frame(BINARY, bytes(range(256)))
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (True, BINARY, bytes(range(256)))
        client.send_close(1000)
        assert_closed_with(client, 1000)
    assert_released(server, redis_server)


def test_messages_published_in_redis_keep_their_type(server, redis_url):
    """A message published on Redis arrives as text if it is UTF-8, as binary otherwise."""
    with server.connect(LISTENER) as ws:
        client = redis.Redis.from_url(redis_url)
        client.publish("broadcast:foo", "text ✓".encode())
        client.publish("broadcast:foo", b"\x80\x81")
        client.close()
        assert ws.recv(timeout=5) == "text ✓"
        assert ws.recv(timeout=5) == b"\x80\x81"


def test_ping_gets_pong_with_same_payload(server, redis_server):
    """A ping is answered by a pong carrying its payload; an unsolicited pong is ignored."""
    with RawClient(server.port, PUBLISHER) as client:
        client.send_frame(PING, b"are you there?")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"are you there?")
        client.send_frame(PONG, b"unsolicited")
        client.send_frame(PING, b"")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"")
        client.send_frame(TEXT, b"still here")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (TEXT, b"still here")
    assert_released(server, redis_server)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_fragmented_message_is_reassembled_and_published_whole(server, redis_server, opcode):
    """Three fragments with a ping between them: one pong, then one whole message for all."""
    if opcode == TEXT:
        # "é" is split between two fragments: valid once reassembled.
        parts = [b"Hel", b"lo, w\xc3", b"\xa9rld"]
        whole: str | bytes = "Hello, wérld"
    else:
        parts = [b"\xff\x00", b"\x01\xfe", b"\x80"]
        whole = b"\xff\x00\x01\xfe\x80"
    with server.connect(LISTENER) as listener, RawClient(server.port, PUBLISHER) as client:
        client.send_frame(opcode, parts[0], fin=False)
        client.send_frame(PING, b"between")
        client.send_frame(CONTINUATION, parts[1], fin=False)
        pong = client.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"between")
        client.send_frame(CONTINUATION, parts[2], fin=True)
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (True, opcode, b"".join(parts))
        assert listener.recv(timeout=5) == whole
        client.send_frame(TEXT, b"next")
        assert listener.recv(timeout=5) == "next"  # the fragments made exactly one message
    assert_released(server, redis_server)


# -- limits --------------------------------------------------------------------------------


def test_message_at_the_size_limit_passes(start_server, redis_server):
    """A message of exactly max_message_size bytes is accepted and relayed."""
    server = start_server(max_message_size=1024)
    with RawClient(server.port, PUBLISHER) as client:
        client.send_frame(BINARY, b"\xff" * 1024)
        frame = client.read_frame()
        assert (frame.opcode, len(frame.payload)) == (BINARY, 1024)
    assert_released(server, redis_server)


@pytest.mark.parametrize(
    "frames",
    [
        [(BINARY, b"\xff" * 1025, True)],
        [(TEXT, b"a" * 600, False), (CONTINUATION, b"a" * 600, True)],
    ],
    ids=["one frame", "fragments"],
)
def test_message_over_the_size_limit_closes_1009(start_server, redis_server, frames):
    """A message over max_message_size closes the connection with 1009."""
    server = start_server(max_message_size=1024)
    with RawClient(server.port, PUBLISHER) as client:
        for opcode, payload, fin in frames:
            client.send_frame(opcode, payload, fin=fin)
        assert_closed_with(client, 1009)
    assert_released(server, redis_server)
    assert_serves_websockets(server)


def test_forged_huge_length_closes_1009_before_the_payload(start_server, redis_server):
    """A header claiming 2**40 bytes is refused at once, without waiting for the payload."""
    server = start_server(max_message_size=1024)
    with RawClient(server.port, PUBLISHER) as client:
        client.send_raw(struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + b"\x01\x02\x03\x04")
        assert_closed_with(client, 1009)
    assert_released(server, redis_server)


# -- protocol violations -------------------------------------------------------------------


INVALID_UTF8 = {
    "invalid byte": [(TEXT, b"\xff\xfe", True)],
    "overlong encoding": [(TEXT, b"\xc0\xaf", True)],
    "surrogate": [(TEXT, b"a\xed\xa0\x80", True)],
    "truncated at the end": [(TEXT, b"ok\xc3", True)],
    "invalid in a first fragment": [(TEXT, b"ok\xff", False)],
    "invalid close reason": [(CLOSE, b"\x03\xe8\xff\xfe", True)],
}


@pytest.mark.parametrize("case", INVALID_UTF8, ids=list(INVALID_UTF8))
def test_invalid_utf8_closes_1007(server, redis_server, case):
    """Invalid UTF-8 in a text message (even before it is complete) closes with 1007."""
    with RawClient(server.port, PUBLISHER) as client:
        for opcode, payload, fin in INVALID_UTF8[case]:
            client.send_frame(opcode, payload, fin=fin)
        assert_closed_with(client, 1007)
    assert_released(server, redis_server)


PROTOCOL_ERRORS = {
    "unmasked frame": [dict(opcode=TEXT, payload=b"hi", mask=False)],
    "rsv1": [dict(opcode=TEXT, payload=b"hi", rsv=4)],
    "rsv2": [dict(opcode=TEXT, payload=b"hi", rsv=2)],
    "rsv3": [dict(opcode=BINARY, payload=b"hi", rsv=1)],
    "unknown data opcode 3": [dict(opcode=0x3, payload=b"hi")],
    "unknown control opcode 0xB": [dict(opcode=0xB)],
    "ping over 125 bytes": [dict(opcode=PING, payload=b"p" * 126)],
    "close over 125 bytes": [dict(opcode=CLOSE, payload=b"\x03\xe8" + b"r" * 124)],
    "fragmented ping": [dict(opcode=PING, payload=b"p", fin=False)],
    "continuation without a message": [dict(opcode=CONTINUATION, payload=b"x")],
    "new message inside a fragmented one": [
        dict(opcode=TEXT, payload=b"a", fin=False),
        dict(opcode=TEXT, payload=b"b"),
    ],
    "close with a one-byte payload": [dict(opcode=CLOSE, payload=b"\x03")],
    "close code 1005": [dict(opcode=CLOSE, payload=struct.pack("!H", 1005))],
    "close code 999": [dict(opcode=CLOSE, payload=struct.pack("!H", 999))],
    "close code 5000": [dict(opcode=CLOSE, payload=struct.pack("!H", 5000))],
}


@pytest.mark.parametrize("case", PROTOCOL_ERRORS, ids=list(PROTOCOL_ERRORS))
def test_protocol_violation_closes_1002(server, redis_server, case):
    """Each violation of RFC 6455 section 5 closes the connection with 1002."""
    with RawClient(server.port, PUBLISHER) as client:
        for frame in PROTOCOL_ERRORS[case]:
            client.send_frame(**frame)
        assert_closed_with(client, 1002)
    assert_released(server, redis_server)


def test_frames_before_a_violation_are_processed(server, redis_server):
    """Frames that arrived complete before a bad one are handled in order (Autobahn 4.1.3).

    A text message, a frame with reserved opcode 3 and a ping, sent in one write: the message
    is published, then the connection fails with 1002, and the ping is never answered.
    """
    with server.connect(LISTENER) as listener, RawClient(server.port, PUBLISHER) as client:
        client.send_raw(
            encode_client_frame(TEXT, b"before")
            + encode_client_frame(0x3, b"reserved")
            + encode_client_frame(PING, b"after")
        )
        close, before = client.read_until_close()
        assert close.close_code == 1002
        assert PONG not in [frame.opcode for frame in before]
        assert listener.recv(timeout=5) == "before"
    assert_released(server, redis_server)


GARBAGE = {
    **{f"random bytes, seed {seed}": random.Random(seed).randbytes(4096) for seed in range(5)},
    "an HTTP request": b"GET /ws/foo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("case", GARBAGE, ids=list(GARBAGE))
def test_garbage_after_upgrade_closes_the_connection(server, redis_server, case):
    """Garbage after the upgrade ends the connection (1002 or dropped); the worker serves on."""
    garbage = GARBAGE[case]
    with RawClient(server.port, PUBLISHER) as client:
        client.send_raw(garbage)
        try:
            close, _ = client.read_until_close()
        except EOFError:
            pass
        else:
            assert close.close_code == 1002, close
        assert client.reaches_eof()
    assert_released(server, redis_server)
    assert_serves_websockets(server)
