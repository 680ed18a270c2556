"""Persisted messages (WS4REDIS_EXPIRE): the last message of a channel is stored under the
channel's name and replayed to clients that connect later, ahead of the live ones."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import redis
from channel_monitor import ChannelMonitor
from conftest import wait_for

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

CHANNEL = "broadcast:foobar"
SUBSCRIBER = "/ws/foobar?subscribe-broadcast"


def publisher(redis_url: str, **audiences) -> RedisPublisher:
    audiences.setdefault("broadcast", True)
    return RedisPublisher(facility="foobar", settings=Settings(connection=redis_url), **audiences)


@pytest.fixture
def client(redis_url) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def round_trip(ws) -> None:
    """Return once the server handled everything ``ws`` sent before (the relay reads in order)."""
    assert ws.ping().wait(5), "no pong"


def test_stored_message_is_replayed_on_connect_then_live_ones(server, redis_url):
    """A client connecting later first gets the stored message, then live messages in order."""
    publish = publisher(redis_url).publish_message
    publish("old news")
    publish("latest news")
    with server.connect(SUBSCRIBER) as ws:
        publish("live 1")
        publish("live 2")
        assert [ws.recv(timeout=5) for _ in range(3)] == ["latest news", "live 1", "live 2"]


def test_stored_messages_of_several_channels_are_replayed_oldest_first(start_server, redis_url):
    """The stored messages of each subscribed channel are replayed in the order they were stored."""
    server = start_server(process_request="ws_callbacks.token_auth")
    publisher(redis_url, broadcast=False, users=["john"]).publish_message("for john, first")
    publisher(redis_url).publish_message("for all, second")
    with server.connect("/ws/foobar?subscribe-user&subscribe-broadcast&token=t-john") as ws:
        assert [ws.recv(timeout=5) for _ in range(2)] == ["for john, first", "for all, second"]


def test_stored_message_has_the_expire_ttl(client, redis_url):
    """RedisPublisher stores the message for WS4REDIS_EXPIRE seconds (default 3600)."""
    publisher(redis_url).publish_message("kept")
    assert client.get(CHANNEL) == b"kept"
    assert 3590 <= client.ttl(CHANNEL) <= 3600
    publisher(redis_url).publish_message("briefly", expire=60)
    assert 50 <= client.ttl(CHANNEL) <= 60


def test_expire_zero_stores_nothing(client, redis_url):
    """publish_message(expire=0) publishes without storing."""
    publisher(redis_url).publish_message("fleeting", expire=0)
    assert client.keys("*") == []


def test_server_with_expire_zero_replays_nothing(start_server, redis_url):
    """With expire=0 the server replays nothing, even if a message is stored."""
    server = start_server(expire=0)
    publish = publisher(redis_url).publish_message
    publish("stored before")
    with server.connect(SUBSCRIBER) as ws:
        publish("live")
        assert ws.recv(timeout=5) == "live"


def test_client_publication_is_persisted(start_server, redis_url, client):
    """A client publishing with publish-broadcast stores its message for the server's expire."""
    server = start_server(expire=120)
    with (
        ChannelMonitor(redis_url, CHANNEL) as monitor,
        server.connect("/ws/foobar?publish-broadcast") as ws,
    ):
        ws.send("from a client")
        assert monitor.next() == (CHANNEL.encode(), b"from a client")
        round_trip(ws)
        assert client.get(CHANNEL) == b"from a client"
        assert 110 <= client.ttl(CHANNEL) <= 120
    with server.connect(SUBSCRIBER) as later:
        assert later.recv(timeout=5) == "from a client"


def test_client_publication_with_expire_zero_is_not_persisted(start_server, redis_url, client):
    """With expire=0 a client's publication goes through Redis but is not stored."""
    server = start_server(expire=0)
    with (
        ChannelMonitor(redis_url, CHANNEL) as monitor,
        server.connect("/ws/foobar?publish-broadcast") as ws,
    ):
        ws.send("not kept")
        assert monitor.next() == (CHANNEL.encode(), b"not kept")
        round_trip(ws)
        assert client.keys("*") == []


# -- subscribe before read ---------------------------------------------------------------------


class CountingPublisher(threading.Thread):
    """Publishes "1", "2", "3"... as fast as it can, persisting each one (RedisPublisher).

    ``started`` is the highest number whose publication began: any larger number is published
    after the moment ``started`` was read.
    """

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.publish = publisher(redis_url).publish_message
        self.started = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self.started += 1
                self.publish(str(self.started))
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        assert self.error is None, self.error


@pytest.mark.parametrize("channel_already_subscribed", [False, True], ids=["fresh", "shared"])
def test_no_message_is_lost_between_stored_and_live(
    server, redis_url, client, channel_already_subscribed
):
    """Clients connecting while messages are published never miss one.

    The server subscribes first (confirmed by Redis at S), then reads the stored message (at R),
    then relays live messages. Numbers are published and stored in increasing order, one at a
    time, each as PUBLISH then SET in one small pipeline that Redis executes back to back (no
    other client's command runs between them), so:

    * the first message a client gets is the stored one, read at R: never older than what was
      stored before the client connected (``before``), never newer than what was published
      before the 101 arrived (``started``);
    * every number published after S arrives live, so from the first number on there is no gap,
      up to the newest one; in particular nothing published after the 101 is missing;
    * live messages come in Redis' order: after the first, strictly increasing. Numbers
      published between S and R may arrive both stored and live: duplicates are allowed.

    "shared": another websocket keeps the channel subscribed, so the hub does not SUBSCRIBE
    again and S is the moment the websocket is routed.
    """
    counter = CountingPublisher(redis_url)
    counter.start()
    with contextlib.ExitStack() as stack:
        stack.callback(counter.stop)
        if channel_already_subscribed:  # never reads: buffers without limit, no backpressure
            stack.enter_context(server.connect(SUBSCRIBER, max_queue=None))
        for _ in range(30):
            before = int(wait_for_stored(client))
            # max_queue=None: the client keeps reading while messages pile up, so that its
            # closing handshake is not stuck behind its own backpressure.
            with server.connect(SUBSCRIBER, max_queue=None) as ws:
                started = counter.started
                received = [int(ws.recv(timeout=5))]
                while received[-1] < started + 3:
                    received.append(int(ws.recv(timeout=5)))
            first, live = received[0], received[1:]
            assert before <= first <= started, (before, started, received)
            assert live == sorted(set(live)), f"live messages out of order: {received}"
            missing = set(range(first, received[-1] + 1)) - set(received)
            assert not missing, f"missing {sorted(missing)} in {received}"


def wait_for_stored(client: redis.Redis) -> bytes:
    """The stored message of the channel, once there is one."""
    return wait_for(lambda: client.get(CHANNEL))
