"""Property-based frames (hypothesis) after a real upgrade, against one server process.

Valid traffic: any messages, text or binary, cut into fragments anywhere (inside a UTF-8
character too) with pings in between, come back whole and in order, each ping answered with
its payload. Invalid traffic: random bytes, or frames with random header fields, end with a
close code a client can act on (the echo of its own close, 1002, 1007 or 1009), never 1011
(an internal error) nor a traceback, and the server keeps serving.
"""

from __future__ import annotations

import socket
import struct
import uuid

import pytest
from conftest import wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from raw_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    encode_client_frame,
    mask_payload,
)

from ws4redis_gevent.frames import is_valid_close_code

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ECHO = "/ws/fuzz?subscribe-broadcast&publish-broadcast&echo"
MAX_MESSAGE_SIZE = 4096


@pytest.fixture
def fuzz_server(start_server):
    """One server for every example of a test; afterwards it must still serve, and must
    not have logged a traceback."""
    server = start_server(
        expire=0,
        publish_rate=None,
        max_message_size=MAX_MESSAGE_SIZE,
        env={"WS4REDIS_TEST_LOG_LEVEL": "WARNING"},  # many connections: keep stderr small
    )
    yield server
    assert_serves_websockets(server)
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def assert_serves_websockets(server) -> None:
    word = uuid.uuid4().hex
    with server.connect(f"/ws/{word}?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send(word)
        assert ws.recv(timeout=5) == word


# -- valid traffic -------------------------------------------------------------------------

messages = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda text: (TEXT, text.encode("utf-8"))),
        st.binary(max_size=200).map(lambda data: (BINARY, data)),
    ),
    min_size=1,
    max_size=12,
)


@st.composite
def fragmented(draw, items):
    """Frames for ``items``: each message cut at random points, with pings in between."""
    frames, pings = [], []
    for opcode, payload in items:
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, part in enumerate(parts):
            frames.append((opcode if i == 0 else CONTINUATION, part, i == len(parts) - 1))
            if draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                pings.append(ping)
                frames.append((PING, ping, True))
    return frames, pings


@st.composite
def traffic(draw):
    items = draw(messages)
    frames, pings = draw(fragmented(items))
    return items, frames, pings


@FUZZ
@given(traffic())
@example(([(TEXT, "é".encode())], [(TEXT, b"\xc3", False), (CONTINUATION, b"\xa9", True)], []))
def test_fragmented_messages_come_back_whole(fuzz_server, case):
    items, frames, pings = case
    with RawClient(fuzz_server.port, ECHO) as client:
        client.send_raw(b"".join(encode_client_frame(op, p, fin=fin) for op, p, fin in frames))
        data, pongs = [], []
        while len(data) < len(items) or len(pongs) < len(pings):
            frame = client.read_frame()
            assert frame.fin, frame
            (pongs if frame.opcode == PONG else data).append(frame)
        assert [f.payload for f in pongs] == pings
        assert [f.payload for f in data] == [payload for _, payload in items]
        # Each message keeps the type it was sent with (Autobahn 1.2.1 / 9.8.1).
        assert [f.opcode for f in data] == [opcode for opcode, _ in items]
        client.send_close(1000)
        close, _ = client.read_until_close()
        assert close.close_code == 1000


# -- invalid traffic -----------------------------------------------------------------------


@st.composite
def raw_frame(draw):
    """One frame with random header fields (any opcode, reserved bits, mask or not, length
    field of any width, possibly lying), followed by its payload."""
    fin = draw(st.booleans())
    rsv = draw(st.sampled_from([0, 0, 0, 1, 2, 4, 7]))
    opcode = draw(st.integers(0, 15))
    masked = draw(st.sampled_from([True, True, True, False]))
    payload = draw(st.binary(max_size=300))
    width = draw(st.sampled_from(["7", "16", "64"]))
    length = len(payload) if draw(st.booleans()) else draw(st.integers(0, 2**63 - 1))
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if width == "7" and length < 126:
        head += bytes([bit | length])
    elif width in ("7", "16") and length < 1 << 16:
        head += struct.pack("!BH", bit | 126, length)
    else:
        head += struct.pack("!BQ", bit | 127, length)
    if masked:
        key = draw(st.binary(min_size=4, max_size=4))
        return head + key + mask_payload(payload, key)
    return head + payload


invalid = st.one_of(
    st.binary(min_size=1, max_size=2000),
    st.lists(raw_frame(), min_size=1, max_size=6).map(b"".join),
)
# The server's own answers to bad input; otherwise it is echoing a close frame that the input
# happened to contain (a valid code, no reason).
OWN_CODES = {1002, 1007, 1009}


@FUZZ
@given(invalid)
@example(b"\x88\x80\x00\x00\x00\x00")  # an empty close frame: answered with 1000
@example(b"\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff")  # length 2**64 - 1
def test_garbage_after_the_upgrade_never_breaks_the_server(fuzz_server, garbage):
    with RawClient(fuzz_server.port, ECHO) as client:
        client.send_raw(garbage)
        client.sock.shutdown(socket.SHUT_WR)  # end of our input: no frame can complete later
        frames = []
        try:
            while True:
                frames.append(client.read_frame())
        except EOFError:
            pass
    closes = [frame for frame in frames if frame.opcode == CLOSE]
    assert len(closes) <= 1, frames
    if closes:
        code, reason = closes[0].close_code, closes[0].close_reason
        if code not in OWN_CODES:
            assert reason == "" and is_valid_close_code(code), (code, reason)
    wait_for(lambda: fuzz_server.stats()["websockets"] == 0)
