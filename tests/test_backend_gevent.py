"""The gevent backend's websocket over a real socket pair: no write ever reaches a descriptor
number after the websocket let go of it, whatever connection the kernel gave that number to."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest

from ws4redis_gevent.backends.gevent import GeventWebSocket
from ws4redis_gevent.exceptions import ConnectionClosed
from ws4redis_gevent.hub import Outgoing
from ws4redis_gevent.outbox import FRAME_OVERHEAD, Outbox


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


def test_outbox_is_bounded_while_the_handshake_is_under_way():
    """Before the relay starts (the websocket is subscribed before its 101 is written),
    deliveries count against the limit too: the outbox overflows instead of growing."""
    outbox = Outbox(limit=3)
    for n in range(3):
        outbox.deliver(Outgoing(b"%d" % n))
    assert len(outbox) == 3 and not outbox.overflowed
    assert outbox.deliver(Outgoing(b"one too many")) is False
    assert outbox.overflowed and len(outbox) == 0


def test_bytes_the_socket_did_not_take_count_against_the_bound():
    """What a flush handed to the socket and the socket did not take (the websocket keeps it
    for the writer) is pending too: a client that stopped reading cannot make the worker hold
    more than max_bytes for it by having them moved out of the queue."""
    websocket, client = websocket_pair()
    outbox = Outbox(limit=1000, max_bytes=4 << 20)
    outbox.attach(websocket)
    outbox.on_backlog = lambda: None  # no writer: the rest stays unsent
    try:
        outbox.deliver(Outgoing(b"x" * (4 << 20)))
        outbox.flush()
        unsent = outbox.pending_bytes
        assert 0 < unsent < 4 << 20 and websocket.write_pending
        assert outbox.deliver(Outgoing(b"y" * 100)) is True
        assert outbox.pending_bytes == unsent + 100 + FRAME_OVERHEAD
        assert outbox.deliver(Outgoing(b"z" * (4 << 20))) is False
        assert outbox.overflowed
    finally:
        websocket.shutdown()
        client.close()


def test_an_ended_websockets_outbox_takes_nothing():
    """After the websocket ended (while its socket drains, until the hub lets go of its
    channels) deliveries are dropped, not kept."""
    outbox = Outbox(limit=3)
    outbox.on_backlog = lambda: None
    outbox.deliver(Outgoing(b"before"))
    outbox.detach()
    assert len(outbox) == 0
    for n in range(10):
        assert outbox.deliver(Outgoing(b"%d" % n)) is False
    assert len(outbox) == 0


def test_a_relay_whose_outbox_overflowed_during_the_handshake_closes_1008():
    """The relay starts by closing such a websocket with 1008 ("too slow"), sending none of
    the queued messages."""
    from ws4redis_gevent.frames import Close, encode_close
    from ws4redis_gevent.relay import Relay
    from ws4redis_gevent.settings import Settings

    websocket, client = websocket_pair()
    outbox = Outbox(limit=2)
    for n in range(3):
        outbox.deliver(Outgoing(b"%d" % n))
    outbox.put_first([Outgoing(b"persisted")])
    outbox.attach(websocket)
    relay = Relay(websocket, outbox, subscriber=None, settings=Settings())
    try:
        relay.start()
        client.settimeout(5)
        assert client.recv(1000) == encode_close(Close(1008, "too slow"))
        assert relay.close_code == 1008
    finally:
        if relay._close_timer is not None:
            relay._close_timer.kill()
        websocket.shutdown()
        client.close()


def test_a_recovering_websocket_is_told_to_resync_instead_of_closed():
    """A websocket that asked for recovery gets its history read right after subscribing, so
    what overflows its queue during the handshake is mostly duplicates: it is dropped and the
    client told "!resync *" first, then served normally (not locked out by 1008s)."""
    from ws4redis_gevent.outbox import RESYNC_ALL
    from ws4redis_gevent.relay import Relay
    from ws4redis_gevent.settings import Settings

    websocket, client = websocket_pair()
    outbox = Outbox(limit=2)
    outbox.labels = {b"broadcast:news": b"broadcast"}
    for n in range(5):
        outbox.deliver(Outgoing(b"live %d" % n))
    assert outbox.resync and not outbox.overflowed and len(outbox) <= 2
    outbox.put_first([Outgoing(b"recovered")])
    outbox.attach(websocket)
    relay = Relay(websocket, outbox, subscriber=None, settings=Settings())
    try:
        relay.start()
        expected = b"".join(
            Outgoing(payload).frame for payload in (RESYNC_ALL, b"recovered", b"live 4")
        )
        client.settimeout(5)
        received = b""
        while len(received) < len(expected):
            received += client.recv(1000)
        assert received == expected
        assert relay.close_code is None
    finally:
        relay.close()
        if relay._close_timer is not None:
            relay._close_timer.kill()
        websocket.shutdown()
        client.close()
