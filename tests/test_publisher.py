"""publisher.py: RedisPublisher's channels, types and fetch_message (pure units on fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest

from ws4redis_gevent.channels import SESSION_GROUPS_KEY
from ws4redis_gevent.envelope import BINARY
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import SELF, RedisMessage
from ws4redis_gevent.settings import Settings


class Request:
    """What SELF resolves against: a user, the groups in the session, the session key."""

    def __init__(self, user: str, groups: list[str], session_key: str) -> None:
        self.user = type("User", (), {"is_authenticated": True, "get_username": lambda s: user})()
        self.session = type("Session", (dict,), {"session_key": session_key})(
            {SESSION_GROUPS_KEY: groups}
        )


@pytest.fixture
def conn() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def publisher(conn, **kwargs) -> RedisPublisher:
    return RedisPublisher(connection=conn, settings=Settings(expire=60), **kwargs)


def test_channels_of_each_audience(conn) -> None:
    pub = publisher(conn, facility="chat", broadcast=True, users=["john"], groups=["a:b"])
    assert pub.channels == ["broadcast:chat", "group:a%3Ab:chat", "user:john:chat"]


def test_self_resolves_against_the_request(conn) -> None:
    request = Request("mary", ["staff"], "s1")
    pub = publisher(
        conn, facility="f", users=[SELF], groups=[SELF], sessions=[SELF], request=request
    )
    assert set(pub.channels) == {"user:mary:f", "group:staff:f", "session:s1:f"}


def test_publish_stores_the_typed_payload_and_a_stamp(conn) -> None:
    pub = publisher(conn, facility="f", broadcast=True)
    pub.publish_message(b"ascii", binary=True)
    assert conn.get("broadcast:f") == BINARY + b"ascii"
    assert int(conn.get("broadcast:f:@published")) > 0
    assert 0 < conn.ttl("broadcast:f") <= 60


def test_text_stays_bare_for_ws4redis_readers(conn) -> None:
    publisher(conn, facility="f", broadcast=True).publish_message(RedisMessage("hello"))
    assert conn.get("broadcast:f") == b"hello"


def test_fetch_message_returns_the_newest_with_its_type(conn) -> None:
    request = Request("mary", [], "s1")
    publisher(conn, facility="f", broadcast=True).publish_message("old")
    publisher(conn, facility="f", users=["mary"]).publish_message(b"\x01new", binary=True)
    fetched = publisher(conn).fetch_message(request, "f")
    assert fetched == b"\x01new" and fetched.binary is True


def test_binary_false_needs_utf8(conn) -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        publisher(conn, facility="f", broadcast=True).publish_message(b"\xff", binary=False)


def test_unknown_audience_is_refused(conn) -> None:
    with pytest.raises(ValueError):
        publisher(conn).fetch_message(None, "f", audience="everyone")
