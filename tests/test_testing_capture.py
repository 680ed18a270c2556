"""ws4redis_gevent.testing.capture: what code publishes, recorded with fakeredis, no server."""

from __future__ import annotations

import pytest
from redis_server import execute

from ws4redis_gevent import settings
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import SELF, RedisMessage, redis_client
from ws4redis_gevent.testing import capture_publishes
from ws4redis_gevent.testing.channel_names import ChannelName, parse_channel


@pytest.fixture(autouse=True)
def clean_settings():
    settings.reset()
    yield
    settings.reset()


class Request:
    """A view's request, as identity_from_request reads it (no Django here)."""

    def __init__(self, username: str, session_key: str) -> None:
        self.user = type("User", (), {"is_authenticated": True, "username": username,
                                      "get_username": lambda self: username,
                                      "groups": None})()
        self.session = type("Session", (), {"session_key": session_key})()


def test_channels_payloads_types_and_expiry():
    with capture_publishes() as published:
        RedisPublisher(facility="chat", users=["john", "mary"]).publish_message("hi", expire=60)
        RedisPublisher(facility="chat", broadcast=True).publish_message(b"\xff\x00", expire=0)
        RedisPublisher(facility="news", groups=["staff"]).publish_message('{"n": 1}')
    assert published.channels == [
        "user:john:chat", "user:mary:chat", "broadcast:chat", "group:staff:news",
    ]
    john, mary, broadcast, staff = published.messages
    assert (john.text, john.type, john.expire) == ("hi", "text", 60)
    assert mary.text == "hi"
    assert (broadcast.payload, broadcast.binary, broadcast.expire) == (b"\xff\x00", True, 0)
    with pytest.raises(ValueError, match="binary"):
        _ = broadcast.text
    assert staff.expire == 3600  # WS4REDIS_EXPIRE's default
    assert published.json(group="staff") == [{"n": 1}]
    assert published.texts(user="john") == ["hi"]
    assert published.filter(facility="chat", audience="user") == [john, mary]
    assert published.filter(broadcast=True) == [broadcast]
    assert len(published) == 4


def test_stored_messages_and_fetch_message():
    """What is stored is what fetch_message returns, and what connecting websockets get."""
    with capture_publishes() as published:
        RedisPublisher(facility="chat", users=["john"]).publish_message("first", expire=60)
        RedisPublisher(facility="chat", users=["john"]).publish_message("second", expire=60)
        RedisPublisher(facility="chat", users=["mary"]).publish_message("gone", expire=0)
        request = Request("john", "abc")
        assert RedisPublisher().fetch_message(request, "chat") == b"second"
        assert published.fetch_message(request, "chat", "user") == b"second"
    assert published.stored("user:john:chat") == b"second"
    assert published.ttl("user:john:chat") == 60
    assert published.stored("user:mary:chat") is None
    assert published.ttl("user:mary:chat") is None
    assert published.fetch_message(Request("mary", "x"), "chat") is None


def test_self_resolves_against_the_request():
    with capture_publishes() as published:
        publisher = RedisPublisher(
            facility="chat", users=[SELF], sessions=[SELF], request=Request("john", "k1")
        )
        assert publisher.publish_message("me") == 0  # no websocket: nobody received it
    assert published.channels == ["user:john:chat", "session:k1:chat"]


def test_prefix_and_channel_names():
    settings.configure(prefix="demo")
    with capture_publishes() as published:
        RedisPublisher(facility="chat", broadcast=True).publish_message("x")
    assert published.messages[0].parts == ChannelName("demo", "broadcast", None, "chat")
    assert published.messages[0].name is None
    assert parse_channel("p:q:user:john:f") == ChannelName("p:q", "user", "john", "f")
    with pytest.raises(ValueError):
        parse_channel("nothing")


def test_history_is_recorded_without_lua():
    """A facility with WS4REDIS_HISTORY publishes through a Lua script: the capture records and
    stores it all the same (fakeredis has no Lua)."""
    settings.configure(history={"chat": {"size": 10, "ttl": 60}})
    with capture_publishes() as published:
        receivers = RedisPublisher(facility="chat", broadcast=True).publish_message("h", 30)
    assert receivers == 0
    assert [(m.channel, m.text, m.expire) for m in published] == [("broadcast:chat", "h", 30)]
    assert published.stored("broadcast:chat") == b"h"


def test_clear_and_stop():
    capture = capture_publishes().start()
    RedisPublisher(facility="a", broadcast=True).publish_message("x")
    capture.clear()
    assert capture.messages == [] and capture.stored("broadcast:a") is None
    capture.stop()
    capture.stop()  # twice is harmless
    with pytest.raises(RuntimeError), capture:
        capture.start()


def test_never_reaches_the_configured_redis(redis_url, redis_server):
    """With WS4REDIS_CONNECTION naming a real server, nothing reaches it while capturing: not
    the publisher, not redis_client(), not a subscriber's pool."""
    settings.configure(connection=redis_url)
    clients_before = len(execute(redis_server, "CLIENT", "LIST").splitlines())
    with capture_publishes() as published:
        RedisPublisher(facility="chat", broadcast=True).publish_message("secret", expire=60)
        redis_client(redis_url).set("direct", "1")
        assert published.client.get("direct") == b"1"
    assert execute(redis_server, "DBSIZE") == 0
    assert len(execute(redis_server, "CLIENT", "LIST").splitlines()) == clients_before
    assert published.texts(broadcast=True) == ["secret"]
    # Afterwards the real server is used again.
    RedisPublisher(facility="chat", broadcast=True).publish_message("real", expire=60)
    assert execute(redis_server, "GET", "broadcast:chat") == b"real"


def test_message_types_chosen_by_the_publisher():
    """The type a websocket would receive: declared with ``binary=``, or decided by content."""
    with capture_publishes() as published:
        publisher = RedisPublisher(facility="files", broadcast=True)
        publisher.publish_message(b"looks like text", binary=True, expire=60)
        publisher.publish_message(b"\xff\xfe")  # not UTF-8: binary, as ws4redis decided
        publisher.publish_message(b"plain bytes")  # UTF-8: text
        publisher.publish_message("\x00starts with NUL", binary=False)
        publisher.publish_message(RedisMessage(b"{}", binary=True))
        fetched = published.fetch_message(None, "files", "broadcast")
    assert [(m.payload, m.type) for m in published] == [
        (b"looks like text", "binary"),
        (b"\xff\xfe", "binary"),
        (b"plain bytes", "text"),
        (b"\x00starts with NUL", "text"),
        (b"{}", "binary"),
    ]
    assert (fetched, fetched.binary) == (b"{}", True)
    assert published.stored("broadcast:files") == b"{}"


def test_quoted_names_read_back():
    with capture_publishes() as published:
        RedisPublisher(facility="a:b", users=["x%y"]).publish_message("q")
    [message] = published
    assert message.channel == "user:x%25y:a%3Ab"
    assert (message.name, message.facility, message.audience) == ("x%y", "a:b", "user")
    assert published.texts(user="x%y", facility="a:b") == ["q"]


@pytest.mark.parametrize(
    "connection",
    ["redis+cluster://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/mymaster", {"port": 1}],
)
def test_any_topology_is_captured_without_connecting(connection):
    """Cluster, Sentinel or a plain server in the settings (none of them listening): the
    capture never tries to reach them."""
    settings.configure(connection=connection)
    with capture_publishes() as published:
        RedisPublisher(facility="chat", users=["ann"]).publish_message("hi", expire=9)
        assert RedisPublisher().fetch_message(Request("ann", "k"), "chat") == b"hi"
    assert [(m.channel, m.text, m.expire) for m in published] == [("user:ann:chat", "hi", 9)]
