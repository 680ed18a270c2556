"""The test tools on a plain WSGI project: the pytest plugin's live server and its client."""

import urllib.request

import pytest

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.testing import HandshakeRefused
from ws4redis_gevent.testing.client import ws_path


def test_http_passes_through(ws4redis_live_server):
    with urllib.request.urlopen(ws4redis_live_server.url + "/page", timeout=5) as response:
        assert response.read() == b"hello from the app"


def test_flags_publish_and_echo(ws4redis_connect):
    listener = ws4redis_connect(ws_path("room", "subscribe-broadcast"))
    talker = ws4redis_connect(ws_path("room", "subscribe-broadcast", "publish-broadcast", "echo"))
    talker.send("hi")
    assert talker.recv() == "hi"
    assert listener.recv() == "hi"
    talker.send(b"\xff\x01")
    assert listener.recv() == b"\xff\x01"
    RedisPublisher(facility="room", broadcast=True).publish_message('{"n": 2}')
    assert listener.recv_json() == {"n": 2}
    RedisPublisher(facility="room", broadcast=True).publish_message(b"abc", binary=True)
    assert listener.recv() == b"abc"  # the publisher chose binary: bytes
    listener.assert_no_message(within=0.2)


def test_recv_times_out(ws4redis_connect):
    websocket = ws4redis_connect("/ws/quiet?subscribe-broadcast")
    with pytest.raises(TimeoutError):
        websocket.recv(timeout=0.3)


def test_heartbeats_are_skipped_unless_awaited(ws4redis_connect):
    websocket = ws4redis_connect("/ws/room?subscribe-broadcast")
    websocket.recv_heartbeat(timeout=3)  # sent by the server every 0.2 s
    websocket.send_heartbeat()
    websocket.recv_heartbeat(timeout=3)
    websocket.assert_no_message(within=0.5)  # heartbeats keep coming, and are skipped


def test_recovery_after_reconnecting(ws4redis_connect):
    first = ws4redis_connect("/ws/feed?subscribe-broadcast&recover")
    RedisPublisher(facility="feed", broadcast=True).publish_message("one")
    received = first.recv_recovered()
    assert (received.label, received.data) == ("broadcast", "one")
    assert received.position is not None
    first.close()
    RedisPublisher(facility="feed", broadcast=True).publish_message("two")
    RedisPublisher(facility="feed", broadcast=True).publish_message("three")
    again = first.reconnect()
    assert "since=broadcast%40" in again.url
    assert [again.recv(), again.recv()] == ["two", "three"]


def test_refused_handshake(ws4redis_live_server):
    with pytest.raises(HandshakeRefused) as refused:
        ws4redis_live_server.connect("/ws/secret?subscribe-broadcast")
    assert refused.value.status == 403
    assert b"no secrets here" in refused.value.body


def test_close_codes(ws4redis_connect):
    websocket = ws4redis_connect("/ws/room?publish-broadcast")
    websocket.send("x" * 2000)  # over max_message_size
    assert websocket.expect_close().code == 1009
    assert ws4redis_connect("/ws/room?subscribe-broadcast").close(4000, "bye").code == 4000


def test_stored_messages_do_not_leak_between_tests_1(ws4redis_connect):
    RedisPublisher(facility="stored", broadcast=True).publish_message("kept", expire=60)
    assert ws4redis_connect("/ws/stored?subscribe-broadcast").recv() == "kept"


def test_stored_messages_do_not_leak_between_tests_2(ws4redis_connect):
    ws4redis_connect("/ws/stored?subscribe-broadcast").assert_no_message(within=0.3)


def test_capture_in_a_plain_project(ws4redis_capture):
    RedisPublisher(facility="room", users=["ann"]).publish_message("hi", expire=5)
    assert [(m.channel, m.text, m.expire) for m in ws4redis_capture] == [("user:ann:room", "hi", 5)]
