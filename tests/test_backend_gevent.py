"""The gevent backend's websocket over a real socket pair: no write ever reaches a descriptor
number after the websocket let go of it, whatever connection the kernel gave that number to."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest

from ws4redis_gevent.backends.gevent import GeventWebSocket
from ws4redis_gevent.exceptions import ConnectionClosed
from ws4redis_gevent.hub import Outgoing
from ws4redis_gevent.relay import Outbox


def websocket_pair() -> tuple[GeventWebSocket, gevent.socket.socket]:
    server, client = gevent.socket.socketpair()
    return GeventWebSocket(server, b"", 1 << 20), client


def test_frames_go_out_while_open():
    websocket, client = websocket_pair()
    try:
        frame = Outgoing(b"hello").frame
        assert websocket.send_nowait(frame) == len(frame)
        assert client.recv(100) == frame
    finally:
        websocket.shutdown()
        client.close()


def test_no_write_reaches_a_reused_descriptor_number():
    """Once shut down, the websocket's descriptor number may belong to the next connection: a
    late flush (the hub delivering to a websocket that just ended) must fail, not write there."""
    websocket, client = websocket_pair()
    number = websocket._sock.fileno()
    outbox = Outbox()
    outbox.attach(websocket)
    outbox.on_backlog = lambda: None
    websocket.shutdown()
    client.close()
    reused, peer = gevent.socket.socketpair()
    try:
        assert number in (reused.fileno(), peer.fileno()), "the number was not reused"
        with pytest.raises(ConnectionClosed):
            websocket.send_nowait(b"\x81\x05stale")
        with pytest.raises(ConnectionClosed):
            websocket.send_bytes(b"\x81\x05stale")
        outbox.deliver(Outgoing(b"stale"))
        outbox.flush()
        for sock in (reused, peer):
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(100)
    finally:
        reused.close()
        peer.close()


def test_a_frame_cut_short_is_finished_before_any_other_frame():
    """A non-blocking write that the socket takes only in part leaves the rest with the
    websocket: a pong or a close frame written meanwhile by another greenlet goes after the
    whole frame, never inside it."""
    websocket, client = websocket_pair()
    try:
        big = Outgoing(b"x" * (4 << 20)).frame
        assert 0 < websocket.send_nowait(big) < len(big)  # the websocket keeps the rest
        assert websocket.write_pending
        assert websocket.send_nowait(b"\x81\x01y") == 0  # nothing else may start meanwhile
        pong = gevent.spawn(websocket.pong, b"p")
        close = gevent.spawn(websocket.send_close, 1000)
        received = bytearray()
        expected = len(big) + 3 + 4
        with gevent.Timeout(10):
            while len(received) < expected:
                received += client.recv(1 << 16)
        gevent.joinall([pong, close], timeout=5, raise_error=True)
        assert bytes(received[: len(big)]) == big
        assert bytes(received[len(big) :]) == b"\x8a\x01p" + b"\x88\x02\x03\xe8"
        assert not websocket.write_pending
    finally:
        websocket.shutdown()
        client.close()
