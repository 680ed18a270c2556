"""The gevent backend's websocket over a real socket pair: no write ever reaches a descriptor
number after the websocket let go of it, whatever connection the kernel gave that number to."""

from __future__ import annotations

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
