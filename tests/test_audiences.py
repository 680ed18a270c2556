"""Audiences end to end: broadcast, user, group and session channels between real websockets and
a real Redis, for a plain WSGI app whose clients are identified by a process_request callback."""

from __future__ import annotations

import pytest
import redis
from channel_monitor import ChannelMonitor
from conftest import wait_for
from redis_server import pubsub_channels

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import RedisMessage
from ws4redis_gevent.settings import Settings

TOKEN_AUTH = "ws_callbacks.token_auth"  # ?token=t-john: john, groups chatters+admins, sess-john
ALL_FLAGS = (
    "subscribe-broadcast&subscribe-user&subscribe-group&subscribe-session"
    "&publish-user&publish-group&publish-session"
)


def publisher(redis_url: str, prefix: str | None = None, **audiences) -> RedisPublisher:
    settings = Settings(connection=redis_url, prefix=prefix)
    return RedisPublisher(
        facility=audiences.pop("facility", "foobar"), settings=settings, **audiences
    )


def wait_for_channels(server, expected: dict[str, int]) -> None:
    """Wait until the server's hub routes exactly ``expected`` (channel -> websocket count)."""
    wait_for(lambda: server.stats()["channels"] == expected)


def round_trip(ws) -> None:
    """Return once the server handled everything ``ws`` sent before (the relay reads in order)."""
    assert ws.ping().wait(5), "no pong"


# -- broadcast ---------------------------------------------------------------------------------


def test_redis_publisher_broadcast_reaches_every_subscriber(server, redis_url):
    """RedisPublisher(facility='foobar', broadcast=True) reaches every subscribe-broadcast
    websocket of /ws/foobar, and only those."""
    with (
        server.connect("/ws/foobar?subscribe-broadcast") as first,
        server.connect("/ws/foobar?subscribe-broadcast") as second,
        server.connect("/ws/other?subscribe-broadcast") as elsewhere,
    ):
        publisher(redis_url, broadcast=True).publish_message(RedisMessage("Hello World"))
        assert first.recv(timeout=5) == "Hello World"
        assert second.recv(timeout=5) == "Hello World"
        publisher(redis_url, facility="other", broadcast=True).publish_message("other news")
        assert elsewhere.recv(timeout=5) == "other news"  # and not Hello World before it


def test_publish_broadcast_sends_to_the_broadcast_channel(server, redis_url):
    """A client with publish-broadcast publishes what it sends on ``broadcast:foobar``."""
    with (
        ChannelMonitor(redis_url, "broadcast:foobar") as monitor,
        server.connect("/ws/foobar?publish-broadcast") as ws,
    ):
        ws.send("from the browser")
        assert monitor.next() == (b"broadcast:foobar", b"from the browser")


def test_prefix_option_changes_channel_names(start_server, redis_url):
    """With prefix='myprefix' every channel is ``myprefix:...``, both ways."""
    server = start_server(prefix="myprefix")
    with (
        ChannelMonitor(redis_url, "myprefix:broadcast:foobar", "broadcast:foobar") as monitor,
        server.connect("/ws/foobar?subscribe-broadcast&publish-broadcast") as ws,
    ):
        wait_for_channels(server, {"myprefix:broadcast:foobar": 1})
        ws.send("up")
        assert monitor.next() == (b"myprefix:broadcast:foobar", b"up")

        prefixed = publisher(redis_url, prefix="myprefix", broadcast=True)
        assert prefixed.channels == ["myprefix:broadcast:foobar"]
        prefixed.publish_message("down")
        assert ws.recv(timeout=5) == "down"

        publisher(redis_url, broadcast=True).publish_message("unprefixed")
        prefixed.publish_message("marker")
        assert ws.recv(timeout=5) == "marker"


def test_unknown_flags_are_ignored(server, redis_url):
    """Unknown query flags neither fail the handshake nor subscribe to anything."""
    with server.connect("/ws/foobar?bogus&subscribe-broadcast&subscribe-everything=1&x=y") as ws:
        wait_for_channels(server, {"broadcast:foobar": 1})
        publisher(redis_url, broadcast=True).publish_message("still works")
        assert ws.recv(timeout=5) == "still works"


# -- user, group and session, for an identity set by process_request ---------------------------


def test_subscribe_user_receives_that_users_messages(start_server, redis_url):
    """subscribe-user receives ``user:NAME:foobar`` for the identified user only."""
    server = start_server(process_request=TOKEN_AUTH)
    with (
        server.connect("/ws/foobar?subscribe-user&token=t-john") as john,
        server.connect("/ws/foobar?subscribe-user&token=t-mary") as mary,
    ):
        wait_for_channels(server, {"user:john:foobar": 1, "user:mary:foobar": 1})
        to_john = publisher(redis_url, users=["john"])
        assert to_john.channels == ["user:john:foobar"]
        to_john.publish_message("for john")
        assert john.recv(timeout=5) == "for john"
        publisher(redis_url, users=["mary"]).publish_message("for mary")
        assert mary.recv(timeout=5) == "for mary"  # not "for john" first


def test_subscribe_group_receives_each_groups_messages(start_server, redis_url):
    """subscribe-group receives the messages of every group in the session's ws4redis:memberof."""
    server = start_server(process_request=TOKEN_AUTH)
    with (
        server.connect("/ws/foobar?subscribe-group&token=t-john") as john,
        server.connect("/ws/foobar?subscribe-group&token=t-mary") as mary,
    ):
        wait_for_channels(server, {"group:admins:foobar": 1, "group:chatters:foobar": 2})
        publisher(redis_url, groups=["chatters"]).publish_message("to chatters")
        publisher(redis_url, groups=["admins"]).publish_message("to admins")
        publisher(redis_url, groups=["chatters"]).publish_message("chatters again")
        assert [john.recv(timeout=5) for _ in range(3)] == [
            "to chatters",
            "to admins",
            "chatters again",
        ]
        assert [mary.recv(timeout=5) for _ in range(2)] == ["to chatters", "chatters again"]


def test_subscribe_session_receives_that_sessions_messages(start_server, redis_url):
    """subscribe-session receives ``session:KEY:foobar`` for the request's session key."""
    server = start_server(process_request=TOKEN_AUTH)
    with server.connect("/ws/foobar?subscribe-session&token=t-john") as ws:
        wait_for_channels(server, {"session:sess-john:foobar": 1})
        to_session = publisher(redis_url, sessions=["sess-john"])
        assert to_session.channels == ["session:sess-john:foobar"]
        publisher(redis_url, sessions=["sess-mary"]).publish_message("wrong session")
        to_session.publish_message("for this session")
        assert ws.recv(timeout=5) == "for this session"


@pytest.mark.parametrize(
    ("flag", "channels"),
    [
        ("publish-user", ["user:john:foobar"]),
        ("publish-group", ["group:chatters:foobar", "group:admins:foobar"]),
        ("publish-session", ["session:sess-john:foobar"]),
    ],
)
def test_publish_audience_sends_to_the_identitys_channels(start_server, redis_url, flag, channels):
    """publish-user/group/session publish what the client sends on its own identity's channels."""
    server = start_server(process_request=TOKEN_AUTH)
    with (
        ChannelMonitor(redis_url, *channels) as monitor,
        server.connect(f"/ws/foobar?{flag}&token=t-john") as ws,
    ):
        ws.send("hello")
        received = sorted(monitor.next() for _ in channels)
        assert received == sorted((channel.encode(), b"hello") for channel in channels)


@pytest.mark.parametrize("process_request", [TOKEN_AUTH, None], ids=["anonymous-user", "no-user"])
def test_anonymous_client_gets_only_broadcast(
    start_server, redis_server, redis_url, process_request
):
    """An anonymous client asking for user/group/session audiences is upgraded, subscribed to
    broadcast only, and publishes nowhere: no ``user:None`` or ``SELF`` channel, no crash."""
    options = {"process_request": process_request} if process_request else {}
    server = start_server(**options)
    with server.connect(f"/ws/foobar?{ALL_FLAGS}") as ws:
        wait_for_channels(server, {"broadcast:foobar": 1})
        assert pubsub_channels(redis_server) == [b"broadcast:foobar"]
        ws.send("from nobody")
        round_trip(ws)
        # A publication would have persisted the message under its channel's name.
        with redis.Redis.from_url(redis_url) as client:
            assert client.keys("*") == []
        publisher(redis_url, broadcast=True).publish_message("broadcast still works")
        assert ws.recv(timeout=5) == "broadcast still works"
    stats = wait_for(lambda: (s := server.stats())["websockets"] == 0 and s)
    assert stats["channels"] == {}
