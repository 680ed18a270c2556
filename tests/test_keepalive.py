"""Keeping websockets alive: the application heartbeat (WS4REDIS_HEARTBEAT) and protocol pings.

The heartbeat is answered to its sender and never published, and the server sends it on its own
timer, not after every message. Protocol pings detect a dead peer: a client that never answers is
dropped, one that answers (as every real client does) stays connected.
"""

from __future__ import annotations

import time

import pytest
import redis
from conftest import wait_for
from raw_client import CLOSE, PING, PONG, RawClient

pytestmark = pytest.mark.integration

HEARTBEAT = "--heartbeat--"
PUBLISHER = "/ws/foo?subscribe-broadcast&publish-broadcast"
LISTENER = "/ws/foo?subscribe-broadcast"


def assert_no_websocket_left(server) -> None:
    def released() -> bool:
        stats = server.stats()
        return stats["websockets"] == 0 and stats["channels"] == {}

    wait_for(released, timeout=10)


# -- the application heartbeat -------------------------------------------------------------


def test_heartbeat_is_answered_and_not_published(start_server, redis_url):
    """A client's heartbeat comes back to it; nobody else on the channel receives it.

    The timer is long here, so any heartbeat the client receives is the answer, and the
    listener's first message tells whether the heartbeat was published before the marker.
    """
    server = start_server(heartbeat=HEARTBEAT, heartbeat_interval=60)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe("broadcast:foo")
        with server.connect(LISTENER) as listener, server.connect(PUBLISHER) as sender:
            sender.send(HEARTBEAT)
            assert sender.recv(timeout=5) == HEARTBEAT
            sender.send("marker")
            assert listener.recv(timeout=5) == "marker"
            message = wait_for(lambda: pubsub.get_message(timeout=0.1), timeout=5)
            assert message["data"] == b"marker"
        assert client.get("broadcast:foo") == b"marker"  # the heartbeat was not persisted
    finally:
        pubsub.close()
        client.close()


def test_server_sends_heartbeats_on_its_timer(start_server):
    """With no traffic at all, the server sends the heartbeat every heartbeat_interval."""
    server = start_server(heartbeat=HEARTBEAT, heartbeat_interval=0.3)
    deadline = time.monotonic() + 2
    with server.connect(LISTENER) as ws:
        received = [ws.recv(timeout=deadline - time.monotonic()) for _ in range(2)]
    assert received == [HEARTBEAT, HEARTBEAT]


def test_heartbeat_is_not_sent_after_every_message(start_server, redis_url):
    """20 quick messages arrive in order, with only the timer's heartbeats among them."""
    interval = 0.3
    server = start_server(heartbeat=HEARTBEAT, heartbeat_interval=interval)
    expected = [f"message {i}" for i in range(20)]
    started = time.monotonic()
    with server.connect(LISTENER) as ws:
        client = redis.Redis.from_url(redis_url)
        with client.pipeline(transaction=False) as pipe:
            for message in expected:
                pipe.publish("broadcast:foo", message)
            pipe.execute()
        client.close()
        received = []
        while len([m for m in received if m != HEARTBEAT]) < len(expected):
            received.append(ws.recv(timeout=5))
    elapsed = time.monotonic() - started
    assert [m for m in received if m != HEARTBEAT] == expected
    heartbeats = received.count(HEARTBEAT)
    assert heartbeats <= elapsed / interval + 1, (heartbeats, elapsed, received)


# -- protocol pings ------------------------------------------------------------------------


def test_silent_client_is_pinged_then_dropped(start_server):
    """A client that answers no ping is pinged, then disconnected, and its websocket released."""
    server = start_server(ping_interval=0.3, ping_timeout=0.3)
    with RawClient(server.port, LISTENER, timeout=5) as client:
        frames = []
        with pytest.raises(EOFError):
            while True:
                frames.append(client.read_frame())
        opcodes = [frame.opcode for frame in frames]
        assert PING in opcodes, frames
        for frame in frames:
            if frame.opcode == CLOSE:
                assert frame.close_code is not None
                frame.close_reason  # noqa: B018 - must be UTF-8
    assert_no_websocket_left(server)


def test_client_answering_pings_stays_connected(start_server):
    """A raw client that answers each ping with a pong is pinged repeatedly and never dropped."""
    server = start_server(ping_interval=0.3, ping_timeout=0.3)
    with RawClient(server.port, PUBLISHER + "&echo") as client:
        deadline = time.monotonic() + 2
        pings = 0
        while (remaining := deadline - time.monotonic()) > 0:
            client.sock.settimeout(remaining)
            try:
                frame = client.read_frame()
            except TimeoutError:
                break
            assert frame.opcode == PING, frame
            pings += 1
            client.send_frame(PONG, frame.payload)
        assert pings >= 2
        client.sock.settimeout(5)
        client.send_frame(0x1, b"still here")
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (0x1, b"still here")


def test_websockets_client_stays_connected_and_receives(start_server, redis_url):
    """The websockets client answers pings by itself: still open after 2 s, still receiving."""
    server = start_server(ping_interval=0.3, ping_timeout=0.3)
    with server.connect(LISTENER) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2)  # nothing to receive, and the connection must not close
        client = redis.Redis.from_url(redis_url)
        client.publish("broadcast:foo", "after the pings")
        client.close()
        assert ws.recv(timeout=5) == "after the pings"
