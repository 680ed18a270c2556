"""outbox.py: what waits for one websocket (pure units, no socket: a fake non-blocking writer).

More, with a real socket pair, in test_backend_gevent.py; the relay's use of it in test_relay.py.
"""

from __future__ import annotations

from ws4redis_gevent.outbox import RESYNC_ALL, Outbox
from ws4redis_gevent.outgoing import Outgoing
from ws4redis_gevent.transport import NonBlockingWrites


class Socket:
    """A websocket that takes ``room`` bytes of each write (all of them when None)."""

    close_sent = False
    write_timeout: float | None = None

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.written = b""

    def send_nowait(self, data: bytes) -> int:
        taken = data if self.room is None else data[: self.room]
        self.written += taken
        return len(taken)

    def finish_write(self) -> None:
        pass


def attached(socket: Socket, **bounds: int) -> Outbox:
    outbox = Outbox(**bounds)
    outbox.attach(socket)  # type: ignore[arg-type]
    outbox.on_backlog = lambda: None  # a relay is running: a flush writes at once
    return outbox


def test_the_fake_socket_is_a_non_blocking_writer() -> None:
    assert isinstance(Socket(), NonBlockingWrites)


def test_a_burst_leaves_in_one_write_of_the_frames_in_order() -> None:
    socket = Socket()
    outbox = attached(socket)
    assert outbox.deliver(Outgoing(b"one", b"c"))  # first of a burst: the hub flushes later
    assert not outbox.deliver(Outgoing(b"two", b"c"))
    outbox.flush()
    assert socket.written == Outgoing(b"one").frame + Outgoing(b"two").frame
    assert len(outbox) == 0


def test_a_client_that_does_not_read_overflows_by_count() -> None:
    socket = Socket(room=0)
    outbox = attached(socket, limit=2)
    overflows: list[bool] = []
    outbox.on_overflow = lambda: overflows.append(True)
    outbox.deliver(Outgoing(b"x"))
    outbox.flush()  # nothing taken: a write is now in progress
    for _ in range(3):
        outbox.deliver(Outgoing(b"x"))
    assert overflows == [True] and outbox.overflowed


def test_a_client_that_does_not_read_overflows_by_bytes() -> None:
    socket = Socket(room=0)
    outbox = attached(socket, max_bytes=1000)
    outbox.on_overflow = lambda: None
    outbox.deliver(Outgoing(b"x" * 600))
    outbox.flush()
    outbox.deliver(Outgoing(b"x" * 600))
    assert outbox.overflowed and "bytes" in outbox.overflow_cause or outbox.overflowed


def test_own_echo_is_swallowed_once() -> None:
    outbox = Outbox()
    outbox.expect_echo(b"c", b"mine")
    assert not outbox.deliver(Outgoing(b"mine", b"c"))
    assert outbox.deliver(Outgoing(b"mine", b"c"))


def test_resync_everything_is_a_plain_frame() -> None:
    outbox = Outbox()
    outbox.labels = {b"c": b"broadcast"}
    outbox.put_first([Outgoing(RESYNC_ALL)])
    assert outbox.encode(outbox._items) == Outgoing(b"!resync *").frame
