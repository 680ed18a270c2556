"""Unit tests of RedisMessage, SELF, RedisStore and RedisPublisher against fakeredis
(ws4redis_gevent/redis_store.py, ws4redis_gevent/publisher.py)."""

from __future__ import annotations

import copy
import pickle
import time
from typing import Any

import fakeredis
import pytest
import redis

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import SELF, STAMP_SUFFIX, RedisMessage, RedisStore
from ws4redis_gevent.settings import Settings

FACILITY = "news"


class FakeUser:
    """What a user needs to offer: get_username() and is_authenticated."""

    def __init__(self, username: str, authenticated: bool = True) -> None:
        self.username = username
        self.is_authenticated = authenticated

    def get_username(self) -> str:
        return self.username


class FakeSession(dict):
    """A session: a mapping with a session_key attribute."""

    def __init__(self, session_key: str | None, **data: Any) -> None:
        super().__init__(data)
        self.session_key = session_key


class FakeRequest:
    def __init__(self, user: Any = None, session: Any = None) -> None:
        self.user = user
        self.session = session


def alice_request() -> FakeRequest:
    """alice, logged in, member of staff and admins, session key sk-alice."""
    session = FakeSession("sk-alice", **{"ws4redis:memberof": ["staff", "admins"]})
    return FakeRequest(FakeUser("alice"), session)


def anonymous_request(session_key: str | None = None) -> FakeRequest:
    """Like Django's AnonymousUser: empty username, not authenticated."""
    session = FakeSession(session_key) if session_key else None
    return FakeRequest(FakeUser("", authenticated=False), session)


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def conn(fake_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fake_server)


def publisher(conn: redis.Redis, prefix: str | None = None, expire: int = 3600, **kwargs: Any):
    kwargs.setdefault("facility", FACILITY)
    return RedisPublisher(
        connection=conn, settings=Settings(prefix=prefix, expire=expire), **kwargs
    )


def next_message(pubsub: Any, timeout: float = 5.0) -> bytes:
    """The data of the next 'message' on ``pubsub``, skipping subscribe confirmations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = pubsub.get_message(timeout=0.1)
        if reply is not None and reply["type"] == "message":
            return reply["data"]
    raise AssertionError("no message received")


# RedisMessage


def test_redis_message_from_str_is_utf8_bytes() -> None:
    """A str becomes its UTF-8 bytes."""
    message = RedisMessage("Hello Wörld")
    assert isinstance(message, bytes)
    assert message == "Hello Wörld".encode()


@pytest.mark.parametrize("value", [b"raw\xff", bytearray(b"raw\xff"), memoryview(b"raw\xff")])
def test_redis_message_from_bytes_like(value: Any) -> None:
    """bytes, bytearray and memoryview are kept as they are."""
    assert RedisMessage(value) == b"raw\xff"


def test_redis_message_from_redis_message() -> None:
    """A RedisMessage can be built from another one."""
    assert RedisMessage(RedisMessage("x")) == b"x"


@pytest.mark.parametrize(
    "reply",
    [
        [b"message", b"broadcast:news", b"payload"],
        ["message", "broadcast:news", b"payload"],
        (b"message", b"broadcast:news", "payload"),
    ],
)
def test_redis_message_from_pubsub_reply(reply: Any) -> None:
    """A raw pub/sub reply [b'message', channel, data] gives its data (as in ws4redis)."""
    assert RedisMessage(reply) == b"payload"


@pytest.mark.parametrize(
    "reply", [[b"subscribe", b"broadcast:news", 1], [b"message", b"ch"], [], [b"pmessage"]]
)
def test_redis_message_rejects_other_pubsub_replies(reply: list[Any]) -> None:
    """Subscribe confirmations and short lists are not messages."""
    with pytest.raises(ValueError):
        RedisMessage(reply)


@pytest.mark.parametrize("value", [None, 42, 1.5, {"data": b"x"}, object()])
def test_redis_message_rejects_other_types(value: Any) -> None:
    """Anything else is refused with ValueError."""
    with pytest.raises(ValueError):
        RedisMessage(value)


# SELF


def test_self_is_a_singleton() -> None:
    """Constructing the SELF class again gives SELF itself."""
    assert type(SELF)() is SELF
    assert repr(SELF) == "SELF"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_self_pickles_as_self(protocol: int) -> None:
    """SELF survives pickling (and copying) as the same object."""
    assert pickle.loads(pickle.dumps(SELF, protocol=protocol)) is SELF
    assert pickle.loads(pickle.dumps([SELF], protocol=protocol))[0] is SELF
    assert copy.copy(SELF) is SELF
    assert copy.deepcopy(SELF) is SELF


# RedisPublisher channels


def test_broadcast_channel(conn: fakeredis.FakeRedis) -> None:
    """broadcast=True publishes on broadcast:FACILITY."""
    assert publisher(conn, broadcast=True).channels == ["broadcast:news"]


def test_named_audiences_channels(conn: fakeredis.FakeRedis) -> None:
    """Users, groups and sessions given by name map to ws4redis' channel names."""
    channels = publisher(conn, users=["alice", "bob"], groups=["staff"], sessions=["sk1"]).channels
    assert sorted(channels) == sorted(
        ["user:alice:news", "user:bob:news", "group:staff:news", "session:sk1:news"]
    )


def test_all_audiences_with_prefix(conn: fakeredis.FakeRedis) -> None:
    """WS4REDIS_PREFIX goes in front of every channel."""
    channels = publisher(
        conn, prefix="app", broadcast=True, users=["alice"], groups=["staff"], sessions=["sk1"]
    ).channels
    assert sorted(channels) == sorted(
        [
            "app:broadcast:news",
            "app:user:alice:news",
            "app:group:staff:news",
            "app:session:sk1:news",
        ]
    )


def test_no_facility_means_no_channels(conn: fakeredis.FakeRedis) -> None:
    """A publisher built without a facility has no channels and publishes nowhere."""
    pub = RedisPublisher(broadcast=True, connection=conn, settings=Settings())
    assert pub.channels == []
    assert pub.publish_message("x") == 0
    assert conn.keys("*") == []


def test_get_prefix(conn: fakeredis.FakeRedis) -> None:
    """get_prefix() is the prefix with its colon, or empty (as in ws4redis)."""
    assert RedisStore(connection=conn, settings=Settings(prefix="app")).get_prefix() == "app:"
    assert RedisStore(connection=conn, settings=Settings()).get_prefix() == ""


def test_self_resolves_against_authenticated_request(conn: fakeredis.FakeRedis) -> None:
    """SELF is the user, each of their groups, and their session key."""
    channels = publisher(
        conn, users=[SELF], groups=[SELF], sessions=[SELF], request=alice_request()
    ).channels
    assert sorted(channels) == sorted(
        [
            "user:alice:news",
            "group:staff:news",
            "group:admins:news",
            "session:sk-alice:news",
        ]
    )


def test_self_mixed_with_names_without_duplicates(conn: fakeredis.FakeRedis) -> None:
    """SELF next to explicit names adds to them; a name listed twice gives one channel."""
    channels = publisher(
        conn, users=["bob", SELF, "alice"], request=alice_request(), prefix="p"
    ).channels
    assert sorted(channels) == ["p:user:alice:news", "p:user:bob:news"]


def test_self_against_anonymous_request_makes_no_channel(conn: fakeredis.FakeRedis) -> None:
    """For an anonymous request without session, SELF stands for nobody."""
    pub = publisher(conn, users=[SELF], groups=[SELF], sessions=[SELF], request=anonymous_request())
    assert pub.channels == []
    assert pub.publish_message("x") == 0
    assert conn.keys("*") == []


def test_self_against_anonymous_request_with_session(conn: fakeredis.FakeRedis) -> None:
    """An anonymous visitor with a session key still has a session channel."""
    pub = publisher(
        conn, users=[SELF], groups=[SELF], sessions=[SELF], request=anonymous_request("sk-anon")
    )
    assert pub.channels == ["session:sk-anon:news"]


def test_self_without_request_makes_no_channel(conn: fakeredis.FakeRedis) -> None:
    """SELF with no request at all resolves to nothing, never to 'SELF' or 'None'."""
    channels = publisher(
        conn, broadcast=True, users=[SELF], groups=[SELF], sessions=[SELF]
    ).channels
    assert channels == ["broadcast:news"]


# publish_message


def test_publish_persists_with_expiry(conn: fakeredis.FakeRedis) -> None:
    """With expire > 0 the message is stored under the channel's name with a TTL."""
    publisher(conn, broadcast=True, users=["alice"]).publish_message(
        RedisMessage("hello"), expire=100
    )
    for channel in ("broadcast:news", "user:alice:news"):
        assert conn.get(channel) == b"hello"
        assert 0 < conn.ttl(channel) <= 100
        assert 0 < conn.ttl(channel + STAMP_SUFFIX) <= 100


def test_publish_uses_expire_setting_by_default(conn: fakeredis.FakeRedis) -> None:
    """Without an expire argument, WS4REDIS_EXPIRE applies."""
    publisher(conn, expire=42, broadcast=True).publish_message("hello")
    assert conn.get("broadcast:news") == b"hello"
    assert 0 < conn.ttl("broadcast:news") <= 42


@pytest.mark.parametrize(("setting", "argument"), [(0, None), (3600, 0)])
def test_publish_with_expire_zero_does_not_persist(
    conn: fakeredis.FakeRedis, setting: int, argument: int | None
) -> None:
    """expire=0 (setting or argument) publishes without storing anything."""
    publisher(conn, expire=setting, broadcast=True).publish_message("hello", expire=argument)
    assert conn.keys("*") == []


def test_publish_returns_subscriber_count(conn: fakeredis.FakeRedis) -> None:
    """The result counts deliveries across all the publisher's channels."""
    pubsub = conn.pubsub()
    pubsub.subscribe("broadcast:news", "user:alice:news")
    other = conn.pubsub()
    other.subscribe("broadcast:news")
    pub = publisher(conn, broadcast=True, users=["alice", "bob"])
    assert pub.publish_message("hi") == 3
    assert pub.publish_message("hi", expire=0) == 3
    pubsub.close()
    other.close()


def test_publish_accepts_plain_str_and_delivers_bytes(conn: fakeredis.FakeRedis) -> None:
    """A plain str is published as its UTF-8 bytes."""
    pubsub = conn.pubsub()
    pubsub.subscribe("broadcast:news")
    assert publisher(conn, broadcast=True).publish_message("grüße") == 1
    assert next_message(pubsub) == "grüße".encode()
    assert conn.get("broadcast:news") == "grüße".encode()
    pubsub.close()


def test_publish_rejects_other_types(conn: fakeredis.FakeRedis) -> None:
    """Publishing something that is not str or bytes raises ValueError."""
    with pytest.raises(ValueError):
        publisher(conn, broadcast=True).publish_message(12)


def test_publish_raises_when_redis_is_down(fake_server: fakeredis.FakeServer) -> None:
    """A Redis failure is raised, not swallowed."""
    conn = fakeredis.FakeRedis(server=fake_server)
    fake_server.connected = False
    with pytest.raises(redis.ConnectionError):
        publisher(conn, broadcast=True).publish_message("x")


# fetch_message


def test_fetch_returns_none_when_nothing_stored(conn: fakeredis.FakeRedis) -> None:
    """No persisted message: None, for every audience."""
    pub = RedisPublisher(connection=conn, settings=Settings())
    for audience in ("any", "broadcast", "user", "group", "session"):
        assert pub.fetch_message(alice_request(), FACILITY, audience) is None


def test_fetch_rejects_unknown_audience(conn: fakeredis.FakeRedis) -> None:
    """An audience other than broadcast/group/user/session/any raises ValueError."""
    pub = RedisPublisher(connection=conn, settings=Settings())
    with pytest.raises(ValueError):
        pub.fetch_message(alice_request(), FACILITY, "everyone")


def test_fetch_any_returns_the_newest_message(conn: fakeredis.FakeRedis) -> None:
    """Among the request's audiences, the most recently published message wins."""
    request = alice_request()
    reader = RedisPublisher(connection=conn, settings=Settings())
    publisher(conn, broadcast=True).publish_message("broadcast 1")
    assert reader.fetch_message(request, FACILITY) == b"broadcast 1"
    publisher(conn, users=[SELF], request=request).publish_message("for alice")
    fetched = reader.fetch_message(request, FACILITY)
    assert isinstance(fetched, RedisMessage)
    assert fetched == b"for alice"
    publisher(conn, broadcast=True).publish_message("broadcast 2")
    assert reader.fetch_message(request, FACILITY, "any") == b"broadcast 2"


def test_fetch_single_audience(conn: fakeredis.FakeRedis) -> None:
    """A named audience only looks at its own channels."""
    request = alice_request()
    reader = RedisPublisher(connection=conn, settings=Settings())
    publisher(conn, groups=["admins"]).publish_message("for admins")
    publisher(conn, sessions=["sk-alice"]).publish_message("for the session")
    publisher(conn, broadcast=True).publish_message("for all")
    assert reader.fetch_message(request, FACILITY, "group") == b"for admins"
    assert reader.fetch_message(request, FACILITY, "session") == b"for the session"
    assert reader.fetch_message(request, FACILITY, "broadcast") == b"for all"
    assert reader.fetch_message(request, FACILITY, "user") is None
    assert reader.fetch_message(request, FACILITY, "any") == b"for all"


def test_fetch_ignores_other_users_and_facilities(conn: fakeredis.FakeRedis) -> None:
    """Messages for another user or another facility are not returned."""
    reader = RedisPublisher(connection=conn, settings=Settings())
    publisher(conn, users=["bob"]).publish_message("for bob")
    publisher(conn, facility="other", broadcast=True).publish_message("other facility")
    assert reader.fetch_message(alice_request(), FACILITY) is None


def test_fetch_with_prefix(conn: fakeredis.FakeRedis) -> None:
    """fetch_message reads the prefixed channels and ignores unprefixed ones."""
    publisher(conn, broadcast=True).publish_message("unprefixed")
    publisher(conn, prefix="app", users=["alice"]).publish_message("prefixed")
    reader = RedisPublisher(connection=conn, settings=Settings(prefix="app"))
    assert reader.fetch_message(alice_request(), FACILITY, "broadcast") is None
    assert reader.fetch_message(alice_request(), FACILITY) == b"prefixed"


def test_fetch_anonymous_request_sees_broadcast_and_session(conn: fakeredis.FakeRedis) -> None:
    """An anonymous request reads broadcast and its own session, nothing else."""
    publisher(conn, users=["alice"]).publish_message("for alice")
    reader = RedisPublisher(connection=conn, settings=Settings())
    assert reader.fetch_message(anonymous_request("sk-anon"), FACILITY) is None
    publisher(conn, broadcast=True).publish_message("for all")
    publisher(conn, sessions=["sk-anon"]).publish_message("for this session")
    assert reader.fetch_message(anonymous_request("sk-anon"), FACILITY) == b"for this session"
    assert reader.fetch_message(anonymous_request(), FACILITY) == b"for all"


def test_fetch_unstamped_value_counts_as_oldest(conn: fakeredis.FakeRedis) -> None:
    """A value stored without a stamp (by ws4redis) is returned only if nothing newer exists."""
    request = alice_request()
    reader = RedisPublisher(connection=conn, settings=Settings())
    conn.set("user:alice:news", b"stored by ws4redis", ex=3600)
    assert reader.fetch_message(request, FACILITY) == b"stored by ws4redis"
    publisher(conn, broadcast=True).publish_message("stamped")
    assert reader.fetch_message(request, FACILITY) == b"stamped"
    assert reader.fetch_message(request, FACILITY, "user") == b"stored by ws4redis"


def test_fetch_unstamped_values_keep_ws4redis_priority(conn: fakeredis.FakeRedis) -> None:
    """Among values stored by ws4redis (no stamps), its search order decides:
    session, then user, then group, then broadcast (the first one found wins)."""
    request = alice_request()
    reader = RedisPublisher(connection=conn, settings=Settings())
    conn.set("broadcast:news", b"legacy broadcast")
    conn.set("group:staff:news", b"legacy group")
    assert reader.fetch_message(request, FACILITY) == b"legacy group"
    conn.set("user:alice:news", b"legacy user")
    assert reader.fetch_message(request, FACILITY) == b"legacy user"
    conn.set("session:sk-alice:news", b"legacy session")
    assert reader.fetch_message(request, FACILITY) == b"legacy session"
