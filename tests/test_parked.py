"""Idle websockets hold no greenlet: the gevent backend parks them on the event loop, which
calls back when frames, the end of the stream or an error arrive (Relay.start). Unit cases on
a real socket pair, then real servers: many idle websockets, few greenlets; TLS sockets, which
cannot be parked, are relayed by their request's greenlet as before."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import time

import gevent
import gevent.event
import gevent.socket
import pytest
import redis
from test_gunicorn import start_gunicorn
from test_nginx import self_signed_certificate
from websockets.exceptions import ConnectionClosed as WebsocketClosed
from websockets.sync.client import connect

from ws4redis_gevent.backends.gevent import GeventWebSocket, _take_over
from ws4redis_gevent.exceptions import ConnectionClosed
from ws4redis_gevent.frames import Message

MASK = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is


def client_frame(payload: bytes) -> bytes:
    return bytes([0x81, 0x80 | len(payload)]) + MASK + payload


def parked_pair() -> tuple[GeventWebSocket, gevent.socket.socket]:
    """A websocket on a bare socket, as the backend makes it after the handshake."""
    server, client = gevent.socket.socketpair()
    return GeventWebSocket(_take_over(server), b"", 1 << 20), client


def test_the_loop_calls_back_once_a_whole_frame_can_be_read():
    websocket, client = parked_pair()
    woken = gevent.event.Event()
    try:
        assert websocket.can_park
        assert websocket.receive_nowait() is None  # nothing there: no waiting either
        websocket.park(woken.set)
        assert not woken.wait(0.05)
        frame = client_frame(b"hello")
        client.sendall(frame[:3])  # half a frame wakes it, but is no event yet
        assert woken.wait(5)
        assert websocket.receive_nowait() == []  # read, but nothing whole
        assert websocket.receive_nowait() is None  # nothing more to read
        woken.clear()
        websocket.park(woken.set)
        client.sendall(frame[3:])
        assert woken.wait(5)
        (event,) = websocket.receive_nowait()
        assert isinstance(event, Message) and event.data == "hello"
    finally:
        websocket.shutdown()
        client.close()


def test_frames_that_came_with_the_handshake_are_read_without_waiting():
    server, client = gevent.socket.socketpair()
    websocket = GeventWebSocket(_take_over(server), client_frame(b"early"), 1 << 20)
    woken = gevent.event.Event()
    try:
        websocket.park(woken.set)  # nothing will arrive on the socket: the loop calls back
        assert woken.wait(5)
        (event,) = websocket.receive_nowait()
        assert event.data == "early"
    finally:
        websocket.shutdown()
        client.close()


def test_end_of_stream_wakes_it_and_the_close_does_not_wait():
    websocket, client = parked_pair()
    woken = gevent.event.Event()
    websocket.park(woken.set)
    client.close()
    assert woken.wait(5)
    with pytest.raises(ConnectionClosed):
        websocket.receive_nowait()
    started = time.monotonic()
    websocket.shutdown(drain=True)  # the client's stream ended already: nothing to drain
    assert time.monotonic() - started < 0.5


def test_abort_from_another_greenlet_wakes_a_parked_websocket():
    websocket, client = parked_pair()
    woken = gevent.event.Event()
    try:
        websocket.park(woken.set)
        gevent.spawn(websocket.abort).join(5)
        assert woken.wait(5)
        with pytest.raises(ConnectionClosed):
            websocket.receive_nowait()
    finally:
        websocket.shutdown()
        client.close()


def test_a_shut_down_websocket_is_not_watched_any_more():
    websocket, client = parked_pair()
    woken = gevent.event.Event()
    websocket.park(woken.set)
    websocket.shutdown()
    client.close()
    assert not woken.wait(0.2)
    with pytest.raises(ConnectionClosed):
        websocket.receive_nowait()


# -- real servers ----------------------------------------------------------------------------


def test_idle_websockets_hold_no_greenlet(server, redis_url):
    """Fifty idle websockets add no greenlet to the server; each still gets what is published,
    answers pings and is released when it closes."""
    before = server.stats()
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(server.connect("/ws/parked?subscribe-broadcast"))
            for _ in range(50)
        ]
        publisher = redis.Redis.from_url(redis_url)
        assert publisher.publish("broadcast:parked", "to all") == 1  # the worker's hub
        for ws in sockets:
            assert ws.recv(timeout=5) == "to all"
        during = server.stats()
        assert during["websockets"] == 50
        assert during["greenlets"] < before["greenlets"] + 10, (before, during)
        for ws in sockets[:5]:
            assert ws.ping().wait(5)  # a pong is written by a greenlet that then ends
        assert server.stats()["greenlets"] < before["greenlets"] + 10
    deadline = time.monotonic() + 10
    while server.stats()["websockets"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats()["websockets"] == 0


def test_tls_websockets_are_relayed_by_their_request_greenlet(tmp_path, redis_url):
    """gunicorn serving TLS itself: the socket is an SSL one, which the loop cannot watch for
    whole records, so the request's greenlet receives as before; everything else is the same."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = self_signed_certificate(tmp_path)
    proc, port = start_gunicorn(redis_url, "--certfile", str(cert), "--keyfile", str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"wss://127.0.0.1:{port}/ws/tls?subscribe-broadcast&publish-broadcast&echo"
        with connect(url, ssl=context, open_timeout=10) as ws:
            ws.send("over TLS")
            assert ws.recv(timeout=5) == "over TLS"  # published and echoed through Redis
            assert ws.ping().wait(5)
            ws.close(4001, "bye")
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4001
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def test_sigterm_closes_every_parked_websocket_before_the_worker_exits(redis_url):
    """gunicorn does not wait for websockets outside its pool: the worker waits for them to
    finish their closing handshakes (1001) before it exits."""
    proc, port = start_gunicorn(redis_url)
    try:
        stack = contextlib.ExitStack()
        url = f"ws://127.0.0.1:{port}/ws/bye?subscribe-broadcast"
        sockets = [stack.enter_context(connect(url, open_timeout=10)) for _ in range(20)]
        for ws in sockets:
            assert ws.ping().wait(5)
        proc.terminate()
        for ws in sockets:
            with pytest.raises(WebsocketClosed):
                ws.recv(timeout=10)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001
        assert proc.wait(timeout=20) == 0
        stack.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
