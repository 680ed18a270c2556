"""Attack review: a typed text payload (``\\x00ws4t\\x00``) that is not UTF-8 went out in a text
frame, and every subscriber's client failed the connection (1007). Our publishers never write
one, but any other publisher on the same Redis can: a ws4redis process during a migration
publishes its clients' binary frames as they are, so one legacy client could cut every new
websocket of a channel, over and over. It is a malformed envelope: dropped, counted, and
recovering websockets are told to resync."""

from __future__ import annotations

import pytest
import redis

from ws4redis_gevent.envelope import MalformedEnvelope, unwrap


def test_unwrap_refuses_typed_text_that_is_not_utf8():
    with pytest.raises(MalformedEnvelope):
        unwrap(b"\x00ws4t\x00\xff\xfe")
    assert unwrap(b"\x00ws4t\x00\x00ok") == (b"\x00ok", False)


def test_invalid_typed_text_from_redis_does_not_cut_subscribers(start_server, redis_url):
    server = start_server(history={"feed": {"size": 10, "ttl": 60}})
    client = redis.Redis.from_url(redis_url)
    with (
        server.connect("/ws/feed?subscribe-broadcast") as plain,
        server.connect("/ws/feed?subscribe-broadcast&recover") as recovering,
    ):
        client.publish("broadcast:feed", b"\x00ws4t\x00\xff\xfe")
        client.publish("broadcast:feed", b"after")
        assert plain.recv(timeout=5) == "after"
        assert recovering.recv(timeout=5) == "!resync broadcast"
        assert recovering.recv(timeout=5) == "broadcast -\nafter"
