"""WS4REDIS_ALLOWED_CHANNELS: a callback, given by dotted path, restricts or refuses the flags a
client asks for, before the upgrade (ws4redis' "Safety considerations")."""

from __future__ import annotations

import json

import pytest
import redis
from channel_monitor import ChannelMonitor
from conftest import wait_for
from redis_server import pubsub_channels
from websockets.exceptions import InvalidStatus

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

TOKEN_AUTH = "ws_callbacks.token_auth"


def broadcast_publisher(redis_url: str) -> RedisPublisher:
    return RedisPublisher(
        facility="foobar", broadcast=True, settings=Settings(connection=redis_url)
    )


def round_trip(ws) -> None:
    """Return once the server handled everything ``ws`` sent before (the relay reads in order)."""
    assert ws.ping().wait(5), "no pong"


def refusal(server, path: str) -> tuple[int, str]:
    """Status and body of a websocket handshake the server must refuse."""
    with pytest.raises(InvalidStatus) as refused, server.connect(path):
        pass
    response = refused.value.response
    return response.status_code, bytes(response.body).decode()


def assert_not_published(ws, monitor: ChannelMonitor, redis_url: str) -> None:
    """What ``ws`` sent so far never reached Redis: the next message there is our marker."""
    round_trip(ws)
    broadcast_publisher(redis_url).publish_message("marker")
    assert monitor.next() == (b"broadcast:foobar", b"marker")


def test_restricting_callback_drops_publish_flags(start_server, redis_url):
    """A callback allowing only subscribe-broadcast drops publish-broadcast: sends go nowhere."""
    server = start_server(allowed_channels="ws_callbacks.subscribe_broadcast_only")
    with (
        ChannelMonitor(redis_url, "broadcast:foobar") as monitor,
        server.connect("/ws/foobar?subscribe-broadcast&publish-broadcast") as ws,
    ):
        ws.send("should be dropped")
        assert_not_published(ws, monitor, redis_url)
        assert ws.recv(timeout=5) == "marker"  # the allowed subscription works
    with redis.Redis.from_url(redis_url) as client:
        assert client.get("broadcast:foobar") == b"marker"  # the dropped one was never stored


def test_permission_denied_is_a_403_before_the_upgrade(start_server, redis_server):
    """Raising PermissionDenied refuses the handshake with 403 and the reason in the body."""
    server = start_server(allowed_channels="ws_callbacks.deny")
    status, body = refusal(server, "/ws/foobar?subscribe-broadcast")
    assert status == 403
    assert "no websockets for you" in body
    stats = server.stats()
    assert (stats["websockets"], stats["channels"]) == (0, {})
    assert pubsub_channels(redis_server) == []


def test_doc_example_refusing_anonymous_users(start_server):
    """ws4redis' second example: anonymous clients get 403, identified ones are upgraded."""
    server = start_server(
        process_request=TOKEN_AUTH, allowed_channels="ws_callbacks.deny_anonymous"
    )
    status, body = refusal(server, "/ws/foobar?subscribe-broadcast")
    assert (status, "log in first" in body) == (403, True)
    with server.connect("/ws/foobar?subscribe-broadcast&token=t-john") as ws:
        round_trip(ws)


def test_callback_returning_none_keeps_the_flags(start_server, redis_url):
    """A callback that returns None (it only raises when it refuses) leaves every flag."""
    server = start_server(allowed_channels="ws_callbacks.keep_flags")
    with (
        ChannelMonitor(redis_url, "broadcast:foobar") as monitor,
        server.connect("/ws/foobar?subscribe-broadcast&publish-broadcast") as ws,
    ):
        wait_for(lambda: server.stats()["channels"] == {"broadcast:foobar": 1})
        ws.send("kept")
        assert monitor.next() == (b"broadcast:foobar", b"kept")


def test_doc_example_intersection(start_server, redis_url):
    """``set(channels).intersection(['subscribe-broadcast', 'subscribe-group'])`` from the ws4redis
    docs: those two subscriptions work, everything else is silently discarded."""
    server = start_server(process_request=TOKEN_AUTH, allowed_channels="ws_callbacks.doc_example")
    path = "/ws/foobar?subscribe-broadcast&subscribe-group&subscribe-user&publish-broadcast"
    with (
        ChannelMonitor(redis_url, "broadcast:foobar") as monitor,
        server.connect(path + "&token=t-john") as ws,
    ):
        expected = {"broadcast:foobar": 1, "group:admins:foobar": 1, "group:chatters:foobar": 1}
        wait_for(lambda: server.stats()["channels"] == expected)
        ws.send("discarded")
        assert_not_published(ws, monitor, redis_url)
        assert ws.recv(timeout=5) == "marker"
        settings = Settings(connection=redis_url)
        RedisPublisher(facility="foobar", users=["john"], settings=settings).publish_message("u")
        RedisPublisher(facility="foobar", groups=["admins"], settings=settings).publish_message("g")
        assert ws.recv(timeout=5) == "g"


def test_callback_receives_the_request_and_the_requested_flags(start_server):
    """The callback is called as (request, channels): the identified request, and the list of
    subscribe/publish flags the client asked for, in order, unknown ones left out."""
    server = start_server(
        process_request=TOKEN_AUTH, allowed_channels="ws_callbacks.report_arguments"
    )
    path = "/ws/foobar?subscribe-user&bogus&publish-broadcast&subscribe-broadcast&token=t-john"
    status, body = refusal(server, path)
    assert status == 403
    seen = json.loads(body.split("ARGS ", 1)[1])
    assert seen == {
        "channels": ["subscribe-user", "publish-broadcast", "subscribe-broadcast"],
        "channels_type": "list",
        "facility": "foobar",
        "path": "/ws/foobar",
        "user": "john",
    }


def test_whitelisting_channels_keeps_echo(start_server):
    """``echo`` is not a channel: a callback that whitelists channels does not switch it off
    (ws4redis passes only subscribe/publish flags to the callback and keeps echo aside)."""
    server = start_server(allowed_channels="ws_callbacks.broadcast_only")
    with server.connect("/ws/foobar?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send("my own")
        assert ws.recv(timeout=5) == "my own"
