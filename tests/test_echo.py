"""Message echoing: without ``&echo`` a client does not get back what it published itself; what
decides is who sent a message, not its content. With ``&echo`` it gets everything.

To prove a message was *not* delivered, each test waits until Redis has carried it (a redis-py
subscriber sees it), then publishes a marker on the same channel: Redis keeps the order of one
channel, so a client that got the message would get it before the marker.
"""

from __future__ import annotations

import pytest
from channel_monitor import ChannelMonitor

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

CHANNEL = "broadcast:foobar"
CHATTY = "/ws/foobar?subscribe-broadcast&publish-broadcast"


@pytest.fixture
def monitor(redis_url):
    with ChannelMonitor(redis_url, CHANNEL) as monitor:
        yield monitor


@pytest.fixture
def publish(redis_url):
    """Publish like Django code does (RedisPublisher, broadcast on foobar)."""
    publisher = RedisPublisher(
        facility="foobar", broadcast=True, settings=Settings(connection=redis_url)
    )
    return publisher.publish_message


def seen_in_redis(monitor: ChannelMonitor, *payloads: str) -> None:
    """Wait until Redis carried exactly ``payloads`` (in any order) on the channel."""
    got = sorted(monitor.payloads(len(payloads)))
    assert got == sorted(p.encode() for p in payloads)


def test_own_message_is_not_echoed_but_others_get_it(server, monitor, publish):
    """Without &echo the sender does not receive its message; another subscriber does."""
    with (
        server.connect(CHATTY) as sender,
        server.connect("/ws/foobar?subscribe-broadcast") as other,
    ):
        sender.send("hello")
        seen_in_redis(monitor, "hello")
        publish("marker")
        assert other.recv(timeout=5) == "hello"
        assert other.recv(timeout=5) == "marker"
        assert sender.recv(timeout=5) == "marker"


def test_identical_message_from_redis_right_after_own_send_is_delivered(server, monitor, publish):
    """The same text published by Django right after the client's own send reaches the client
    once: its own copy is swallowed, the other one is not."""
    with server.connect(CHATTY) as ws:
        ws.send("same text")
        publish("same text")
        seen_in_redis(monitor, "same text", "same text")
        publish("marker")
        assert ws.recv(timeout=5) == "same text"
        assert ws.recv(timeout=5) == "marker"


def test_identical_message_from_redis_right_before_own_send_is_delivered(server, monitor, publish):
    """The same text published by Django right before the client sends it reaches the client
    once, whichever of the two the server sees first."""
    with server.connect(CHATTY) as ws:
        publish("same text")
        ws.send("same text")
        seen_in_redis(monitor, "same text", "same text")
        publish("marker")
        assert ws.recv(timeout=5) == "same text"
        assert ws.recv(timeout=5) == "marker"


def test_identical_message_from_redis_after_own_one_went_through(server, monitor, publish):
    """Once the client's own message has gone through Redis, the same text from Django is
    delivered: the swallowed echo does not mask it."""
    with server.connect(CHATTY) as ws:
        ws.send("same text")
        seen_in_redis(monitor, "same text")
        publish("same text")
        publish("marker")
        assert ws.recv(timeout=5) == "same text"
        assert ws.recv(timeout=5) == "marker"


def test_echo_flag_delivers_own_messages(server, monitor):
    """With &echo the sender receives its own messages."""
    with server.connect(CHATTY + "&echo") as ws:
        ws.send("one")
        ws.send("two")
        assert ws.recv(timeout=5) == "one"
        assert ws.recv(timeout=5) == "two"


def test_two_identical_own_messages_are_both_swallowed(server, monitor, publish):
    """Two identical own messages in a row: neither comes back without &echo."""
    with server.connect(CHATTY) as ws:
        ws.send("twice")
        ws.send("twice")
        seen_in_redis(monitor, "twice", "twice")
        publish("marker")
        assert ws.recv(timeout=5) == "marker"


def test_two_identical_own_messages_are_both_echoed(server, monitor, publish):
    """Two identical own messages in a row both come back with &echo."""
    with server.connect(CHATTY + "&echo") as ws:
        ws.send("twice")
        ws.send("twice")
        seen_in_redis(monitor, "twice", "twice")
        publish("marker")
        assert [ws.recv(timeout=5) for _ in range(3)] == ["twice", "twice", "marker"]
