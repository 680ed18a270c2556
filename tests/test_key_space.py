"""The Redis key space against hostile names: no facility, user or group name a client can reach
makes a channel that equals an internal key or another audience's channel (keys.py).

Each test reproduces a finding of the security review of dd61618 against a real server and a
real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from conftest import wait_for
from websockets.exceptions import InvalidStatus

from ws4redis_gevent.keys import epoch_key, history_key, stamp_key
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings


@pytest.fixture
def client(redis_url) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as conn:
        yield conn


def publish(ws, message: str) -> None:
    ws.send(message)
    assert ws.ping().wait(5), "no pong"  # the relay handled the message before the ping


def status_of(server, path: str) -> int:
    with pytest.raises(InvalidStatus) as refused, server.connect(path):
        pass
    return refused.value.response.status_code


@pytest.mark.parametrize("suffix", ["@published", "@history", "@epoch"])
def test_a_facility_naming_an_internal_key_writes_only_its_own_channel(
    start_server, redis_url, client, suffix
):
    """Publishing on facility ``feed:@SUFFIX`` stores under a quoted channel name, never on
    ``broadcast:feed``'s internal key; ``feed`` keeps working for subscribers and publishers."""
    server = start_server(history={"*": {"size": 10, "ttl": 60}})
    with server.connect(f"/ws/feed:{suffix}?publish-broadcast") as ws:
        publish(ws, "\x00garbage")
    assert client.exists(f"broadcast:feed%3A{suffix}")
    for key in (stamp_key("broadcast:feed"), history_key("broadcast:feed")):
        assert not client.exists(key)
    assert not client.exists(epoch_key("broadcast:feed"))
    settings = Settings(connection=redis_url, history={"*": {"size": 10, "ttl": 60}})
    RedisPublisher(facility="feed", broadcast=True, settings=settings).publish_message("ok")
    with server.connect("/ws/feed?subscribe-broadcast") as ws:
        assert ws.recv(timeout=5) == "ok"
        RedisPublisher(facility="feed", broadcast=True, settings=settings).publish_message("live")
        assert ws.recv(timeout=5) == "live"


def test_a_corrupt_epoch_in_redis_does_not_stop_the_hub(start_server, redis_url, client):
    """An epoch key holding anything but hex digits (written by anyone with Redis access) is
    replaced by the history script; the hub goes on delivering on every facility."""
    server = start_server(history={"*": {"size": 10, "ttl": 60}})
    client.set(epoch_key("broadcast:chat"), b"ev\x00il")
    settings = Settings(connection=redis_url, history={"*": {"size": 10, "ttl": 60}})
    with server.connect("/ws/chat?subscribe-broadcast") as chat, \
            server.connect("/ws/other?subscribe-broadcast") as other:
        RedisPublisher(facility="chat", broadcast=True, settings=settings).publish_message("m1")
        assert chat.recv(timeout=5) == "m1"
        RedisPublisher(facility="other", broadcast=True, settings=settings).publish_message("m2")
        assert other.recv(timeout=5) == "m2"
    assert client.get(epoch_key("broadcast:chat")) != b"ev\x00il"
    assert server.stats()["reconnects"] == 0


def test_forged_envelopes_from_redis_are_dropped_and_counted_not_fatal(
    start_server, redis_url, client
):
    """A message published straight into Redis that looks like an envelope but is none is
    dropped, recovering websockets are told to resync that channel, and the hub keeps reading
    (no reconnect, later messages arrive)."""
    server = start_server(history={"*": {"size": 10, "ttl": 60}})
    with server.connect("/ws/chat?subscribe-broadcast&recover") as tracking, \
            server.connect("/ws/chat?subscribe-broadcast") as plain:
        for forged in (b"\x00ws4r\x00zz\x00x\x00boom", b"\x00ws4r\x00", b"\x00ws4q\x00x"):
            client.publish("broadcast:chat", forged)
            assert tracking.recv(timeout=5) == "!resync broadcast"
        client.publish("broadcast:chat", b"after")
        assert plain.recv(timeout=5) == "after"
        assert tracking.recv(timeout=5) == "broadcast -\nafter"
    assert server.stats()["reconnects"] == 0


def test_a_client_cannot_forge_an_envelope(start_server, client):
    """What a client publishes is wrapped when it could look like an envelope: subscribers get
    exactly the client's bytes, in the frame type the client used, and nothing resyncs."""
    server = start_server(history={"*": {"size": 10, "ttl": 60}})
    forged = "\x00ws4r\x00abcd\x001-1\x00fake"
    with server.connect("/ws/chat?subscribe-broadcast&recover") as tracking, \
            server.connect("/ws/chat?publish-broadcast") as sender:
        publish(sender, forged)
        label, _, payload = tracking.recv(timeout=5).partition("\n")
        assert payload == forged and label.startswith("broadcast ")
        sender.send(forged.encode())
        label, _, payload = tracking.recv(timeout=5).partition(b"\n")
        assert payload == forged.encode()


def test_a_stamp_that_is_not_a_number_does_not_fail_the_handshake(start_server, client):
    """A garbage stamp beside a stored message (the old attack wrote one) is ignored: the
    handshake succeeds and later messages arrive."""
    server = start_server()
    client.set("broadcast:feed", b"stored")
    client.set(stamp_key("broadcast:feed"), b"not a number")
    with server.connect("/ws/feed?subscribe-broadcast&publish-broadcast&echo") as ws:
        publish(ws, "live")
        assert ws.recv(timeout=5) == "live"


def test_group_names_with_colons_do_not_collide(start_server, redis_url):
    """Group ``org:1`` on facility ``admins:news`` and group ``org:1:admins`` on facility
    ``news`` gave the same channel on dd61618; each now has its own."""
    server = start_server(process_request="ws_callbacks.token_auth")
    with server.connect("/ws/admins:news?subscribe-group&publish-group&token=t-alice") as alice, \
            server.connect("/ws/news?subscribe-group&publish-group&token=t-bob") as bob:
        publish(alice, "from alice")
        publish(bob, "from bob")
        # Without echo, each would have received the other's message on a shared channel.
        channels = server.stats()["channels"]
        assert "group:org%3A1:admins%3Anews" in channels
        assert "group:org%3A1%3Aadmins:news" in channels
        with pytest.raises(TimeoutError):
            alice.recv(timeout=0.5)
        with pytest.raises(TimeoutError):
            bob.recv(timeout=0.5)


def test_user_names_with_colons_do_not_collide(start_server, redis_url):
    """User ``eve:news`` on facility ``x`` cannot read user ``eve``'s channel ``news:x``."""
    server = start_server(process_request="ws_callbacks.token_auth")
    with server.connect("/ws/x?subscribe-user&token=t-colon") as ws:
        settings = Settings(connection=redis_url)
        RedisPublisher(facility="news:x", users=["eve"], settings=settings).publish_message("eve")
        RedisPublisher(facility="x", users=["eve:news"], settings=settings).publish_message("me")
        assert ws.recv(timeout=5) == "me"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ws/" + "a" * 129 + "?subscribe-broadcast", 400),
        ("/ws/bad%00name?subscribe-broadcast", 400),
        ("/ws/bad%0aname?subscribe-broadcast", 400),
    ],
)
def test_facilities_that_no_channel_may_carry_are_refused(server, path, status):
    """Too long (WS4REDIS_MAX_FACILITY_LENGTH, 128) or with control characters: 400 with a
    reason, before anything reaches Redis."""
    assert status_of(server, path) == status
    assert server.stats()["channels"] == {}


def test_facilities_outside_the_allowed_list_get_404(start_server):
    """WS4REDIS_FACILITIES bounds what clients can create in Redis: other facilities get 404."""
    server = start_server(facilities=["chat", "room-*"])
    assert status_of(server, "/ws/other?subscribe-broadcast") == 404
    with server.connect("/ws/room-1?subscribe-broadcast"), \
            server.connect("/ws/chat?subscribe-broadcast"):
        pass


def test_a_failed_handshake_releases_its_subscription(start_server):
    """A handshake that fails after subscribing, whatever the error (here a subscriber whose
    reading of stored messages raises), leaves no subscription behind (it did on dd61618)."""
    server = start_server(subscriber="ws_callbacks.FailingSubscriber")
    assert status_of(server, "/ws/feed?subscribe-broadcast") == 500
    wait_for(lambda: server.stats()["channels"] == {}, timeout=10)


def test_binary_and_text_keep_their_type_through_redis(server):
    """Empty binary, ASCII binary and empty text come back in the frame type they were sent in
    (Autobahn 1.2.1 / 9.8.1 saw binary come back as text)."""
    with server.connect("/ws/echo?subscribe-broadcast&publish-broadcast&echo") as ws:
        for message in (b"", b"ascii", "", "text", b"\xff\x00", "\x00nul"):
            ws.send(message)
            got = ws.recv(timeout=5)
            assert got == message and type(got) is type(message)


def test_a_publisher_chooses_the_type(server, redis_url):
    """RedisPublisher: str is text, bytes are decided by content (as ws4redis), binary=True
    forces a binary frame; stored messages replay with their type."""
    settings = Settings(connection=redis_url)
    pub = RedisPublisher(facility="typed", broadcast=True, settings=settings)
    with server.connect("/ws/typed?subscribe-broadcast") as ws:
        pub.publish_message("text")
        pub.publish_message(b"utf8 bytes")
        pub.publish_message(b"\xff")
        pub.publish_message(b"bin", binary=True)
        assert [ws.recv(timeout=5) for _ in range(4)] == ["text", "utf8 bytes", b"\xff", b"bin"]
    with server.connect("/ws/typed?subscribe-broadcast") as ws:
        assert ws.recv(timeout=5) == b"bin"
    assert pub.fetch_message(None, "typed", "broadcast") == b"bin"
    assert pub.fetch_message(None, "typed", "broadcast").binary is True
    with pytest.raises(ValueError):
        pub.publish_message(b"\xff", binary=False)
