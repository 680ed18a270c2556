"""relay.py: what the relay does with what a client sends, and the outbox's resync (pure units
with a fake websocket and subscriber; the socket-level behaviour is in test_protocol.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ws4redis_gevent import relay as relay_module
from ws4redis_gevent.exceptions import ProtocolError
from ws4redis_gevent.frames import CloseCode
from ws4redis_gevent.outbox import FRAME_OVERHEAD, Outbox
from ws4redis_gevent.outgoing import Outgoing
from ws4redis_gevent.relay import Relay, announce_resync
from ws4redis_gevent.settings import Settings


class FakeWebSocket:
    def __init__(self) -> None:
        self.sent: list[list[Outgoing]] = []
        self.pongs: list[bytes] = []

    def send(self, messages: list[Outgoing]) -> None:
        self.sent.append(messages)

    def pong(self, payload: bytes = b"") -> None:
        self.pongs.append(payload)


class FakeSubscriber:
    def __init__(self, publishers: list[str]) -> None:
        self.publish_targets = publishers
        self.published: list[Any] = []

    def publish_message(self, message: Any) -> None:
        self.published.append(message)


def relay(publishers: list[str], subscribed=(b"broadcast:chat",), **settings) -> Relay:
    return Relay(
        FakeWebSocket(),  # type: ignore[arg-type]
        Outbox(),
        FakeSubscriber(publishers),
        Settings(**settings),
        subscribed=subscribed,
    )


def test_text_and_binary_frames_are_published_with_their_type() -> None:
    r = relay(["broadcast:chat"])
    r._on_message("text")
    r._on_message(b"ascii")
    published = r.subscriber.published
    assert [(bytes(m), m.binary) for m in published] == [(b"text", False), (b"ascii", True)]


def test_own_messages_are_expected_as_echoes_without_the_echo_flag() -> None:
    r = relay(["broadcast:chat"])
    r._on_message("hi")
    assert not r.outbox.deliver(Outgoing(b"hi", b"broadcast:chat"))  # swallowed once
    assert r.outbox.deliver(Outgoing(b"hi", b"broadcast:chat"))  # someone else's


def test_the_heartbeat_is_answered_and_never_published() -> None:
    r = relay(["broadcast:chat"], heartbeat="--hb--")
    r._on_message("--hb--")
    assert r.subscriber.published == []
    assert [m.payload for m in r.websocket.sent[0]] == [b"--hb--"]


def test_publishing_beyond_the_rate_closes_1008() -> None:
    r = relay(["broadcast:chat"], publish_rate=1, publish_burst=2)
    r._on_message("1")
    r._on_message("2")
    with pytest.raises(ProtocolError) as refused:
        r._on_message("3")
    assert refused.value.code == CloseCode.POLICY_VIOLATION


def test_resync_of_a_channel_reaches_only_websockets_that_track_it() -> None:
    tracking, plain = Outbox(), Outbox()
    tracking.labels = {b"group:x:chat": b"group:x"}
    assert tracking.resync_channel(b"group:x:chat")
    assert [m.payload for m in tracking._items] == [b"!resync group:x"]
    assert not tracking.resync_channel(b"broadcast:chat")
    assert not plain.resync_channel(b"group:x:chat") and len(plain) == 0


class FakeHub:
    def __init__(self, channels: set[bytes]) -> None:
        self.channels = channels


def test_a_lost_connection_resyncs_only_websockets_on_that_hubs_channels() -> None:
    """On a cluster, one shard's reconnect no longer tells every websocket to resync."""
    on_shard, elsewhere = relay([], (b"broadcast:a",)), relay([], (b"broadcast:b",))
    for r in (on_shard, elsewhere):
        r.outbox.labels = {}
        r.outbox.on_backlog = None  # messages wait in the outbox, as before the relay starts
        relay_module.lifecycle.register(r)
    try:
        announce_resync(FakeHub({b"broadcast:a"}))  # type: ignore[arg-type]
    finally:
        for r in (on_shard, elsewhere):
            relay_module.lifecycle.unregister(r)
    assert [m.payload for m in on_shard.outbox._items] == [b"!resync *"]
    assert len(elsewhere.outbox) == 0


def test_outbox_is_bounded_in_bytes_too():
    """Beside the message count, the bytes waiting count (payload plus frame overhead): the
    outbox overflows once they would pass max_bytes. A message alone is always taken, however
    big: the bound is on a backlog, not on message size."""
    outbox = Outbox(limit=1000, max_bytes=100)
    assert outbox.deliver(Outgoing(b"x" * 1000)) is True  # alone: taken
    assert outbox.pending_bytes == 1000 + FRAME_OVERHEAD
    assert outbox.deliver(Outgoing(b"y")) is False
    assert outbox.overflowed and len(outbox) == 0 and outbox.pending_bytes == 0
    assert "bytes pending, over 100" in outbox.overflow_cause
    small = Outbox(limit=1000, max_bytes=100)
    for _ in range(3):
        small.deliver(Outgoing(b"z" * 10))  # 3 x 24 bytes
    assert not small.overflowed
    small.deliver(Outgoing(b"z" * 20))  # 72 + 34 > 100
    assert small.overflowed


def test_a_recovering_websocket_over_the_byte_bound_resyncs():
    """During the handshake, a websocket that tracks positions is told to resync, not closed,
    when the byte bound is passed (as for the count)."""
    outbox = Outbox(limit=1000, max_bytes=100)
    outbox.labels = {b"broadcast:news": b"broadcast"}
    for n in range(5):
        outbox.deliver(Outgoing(b"live %d" % n + b"." * 40))
    assert outbox.resync and not outbox.overflowed
    assert outbox.pending_bytes <= 100


def test_pings_beyond_the_ping_rate_close_1008() -> None:
    """Each ping within the burst is answered; the next one is refused with 1008."""
    from ws4redis_gevent.frames import Ping

    r = relay([], ping_rate=0.001, ping_burst=3)
    r._handle([Ping(b"1"), Ping(b"2"), Ping(b"3")])
    assert r.websocket.pongs == [b"1", b"2", b"3"]
    with pytest.raises(ProtocolError) as refused:
        r._handle([Ping(b"4")])
    assert (refused.value.code, refused.value.reason) == (1008, "ping rate exceeded")
    assert r.websocket.pongs == [b"1", b"2", b"3"]


def test_heartbeats_share_the_ping_budget_not_the_publish_one() -> None:
    r = relay(["broadcast:chat"], heartbeat="--hb--", ping_rate=0.001, ping_burst=2)
    r._on_message("--hb--")
    r._on_message("--hb--")
    with pytest.raises(ProtocolError) as refused:
        r._on_message("--hb--")
    assert refused.value.reason == "heartbeat rate exceeded"
    r._on_message("still publishes")
    assert [bytes(m) for m in r.subscriber.published] == [b"still publishes"]


def test_no_ping_rate_means_no_limit() -> None:
    from ws4redis_gevent.frames import Ping

    r = relay([], ping_rate=None)
    r._handle([Ping(b"")] * 1000)
    assert len(r.websocket.pongs) == 1000


def test_publishing_beyond_the_byte_rate_closes_1008() -> None:
    """Big messages are bounded in bytes a second too (a hub Redis cannot feed fast enough is
    cut off by Redis at its pub/sub output limit): one whole message passes, then the rate."""
    r = relay(["broadcast:chat"], publish_bytes_rate=1000, max_message_size=1500)
    r._on_message("x" * 1500)  # a burst holds one whole message
    with pytest.raises(ProtocolError) as refused:
        r._on_message("x" * 100)
    assert refused.value.code == CloseCode.POLICY_VIOLATION
    assert "byte rate" in refused.value.reason


def test_messages_nobody_publishes_cost_no_byte_tokens() -> None:
    r = relay([], publish_bytes_rate=10, max_message_size=10)
    for _ in range(5):
        r._on_message("x" * 10)
