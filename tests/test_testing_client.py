"""ws4redis_gevent.testing.client against a real server process (not patched here: the client
works in any process)."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from ws4redis_gevent import settings
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.testing import HandshakeRefused, WebsocketClient, WebsocketClosed
from ws4redis_gevent.testing.client import _cookie_header, ws_path


@pytest.fixture
def publish(redis_url):
    settings.reset()
    settings.configure(connection=redis_url, history={"feed": {"size": 10, "ttl": 60}})

    def publish(facility: str, message, **kwargs) -> None:
        RedisPublisher(facility=facility, broadcast=True).publish_message(message, **kwargs)

    yield publish
    settings.reset()


def client(server, path: str, **kwargs) -> WebsocketClient:
    return WebsocketClient(server.ws_url(path), **kwargs)


def test_ws_path():
    assert ws_path("chat") == "/ws/chat"
    assert ws_path("chat", "subscribe-user", "echo") == "/ws/chat?subscribe-user&echo"
    assert ws_path("c", "recover", since="user@e:1-0") == "/ws/c?recover&since=user%40e%3A1-0"
    with pytest.raises(ValueError, match="subscribe-usr"):
        ws_path("chat", "subscribe-usr")


def test_cookies():
    jar = SimpleCookie()
    jar["sessionid"] = "abc"
    assert _cookie_header(jar) == "sessionid=abc"
    assert _cookie_header({"a": "1", "b": "2"}) == "a=1; b=2"
    assert _cookie_header(None) == ""


def test_text_binary_json_and_timeouts(start_server, publish):
    server = start_server()
    with client(server, "/ws/room?subscribe-broadcast") as websocket:
        publish("room", "text")
        publish("room", b"\x01\x02", binary=True)
        publish("room", '{"a": 1}')
        assert websocket.recv() == "text"
        assert websocket.recv() == b"\x01\x02"
        assert websocket.recv_json() == {"a": 1}
        with pytest.raises(TimeoutError):
            websocket.recv(timeout=0.2)
        websocket.assert_no_message(within=0.1)
        publish("room", "late")
        with pytest.raises(AssertionError, match="late"):
            websocket.assert_no_message(within=2)


def test_heartbeat(start_server, publish):
    server = start_server(heartbeat="--hb--", heartbeat_interval=0.2)
    with client(server, "/ws/room?subscribe-broadcast", heartbeat="--hb--") as websocket:
        websocket.recv_heartbeat(timeout=5)
        publish("room", "between heartbeats", expire=0)
        assert websocket.recv(timeout=5) == "between heartbeats"
        websocket.send_heartbeat()
        websocket.recv_heartbeat(timeout=5)
    with client(server, "/ws/room?subscribe-broadcast") as websocket:
        with pytest.raises(ValueError, match="heartbeat"):
            websocket.send_heartbeat()
        assert websocket.recv(timeout=5) == "--hb--"  # unknown to this client: a message


def test_recovery_and_resync(start_server, publish):
    server = start_server(history={"feed": {"size": 10, "ttl": 60}})
    first = client(server, "/ws/feed?subscribe-broadcast&recover")
    publish("feed", "one")
    received = first.recv_recovered()
    assert received.label == "broadcast" and received.data == "one"
    assert first.positions == {"broadcast": received.position}
    first.close()
    publish("feed", "two")
    with first.reconnect() as again:
        assert again.recv() == "two"
        assert again.positions["broadcast"] != received.position
    with client(server, "/ws/feed?since=broadcast@ffff:1-0&subscribe-broadcast&recover") as lost:
        publish("feed", "three")
        assert lost.recv() == "three"
        assert lost.resyncs == ["broadcast"]
        lost.positions = {"broadcast": "ffff:2-0"}
        with lost.reconnect() as third:
            assert third.url.endswith("?subscribe-broadcast&recover&since=broadcast%40ffff%3A2-0")


def test_close_codes(start_server):
    server = start_server(max_message_size=100)
    websocket = client(server, "/ws/room?publish-broadcast")
    websocket.send(b"x" * 200)
    close = websocket.expect_close()
    assert close.code == 1009
    with pytest.raises(WebsocketClosed) as closed:
        websocket.recv(timeout=1)
    assert closed.value.code == 1009
    assert client(server, "/ws/room?subscribe-broadcast").close(4001, "done").code == 4001


def test_refused_handshake(start_server):
    server = start_server()
    with pytest.raises(HandshakeRefused) as refused:
        client(server, "/ws/")
    assert refused.value.status == 404
    assert b"facility" in refused.value.body
    with pytest.raises(ValueError, match="ws://"):
        WebsocketClient("http://127.0.0.1:1/ws/x")
