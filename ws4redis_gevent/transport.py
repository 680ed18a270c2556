"""What the relay asks of an upgraded connection: the ``WebSocket`` every backend provides, and
the optional capabilities some have, as typed Protocols.

The core owns these interfaces; backends implement them (and import the core, never the other
way round). The relay learns a websocket's capabilities once, when it is built, with
``isinstance`` against the runtime-checkable Protocols below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from .frames import Event
from .outgoing import Outgoing


class WebSocket(Protocol):
    """An upgraded connection, as the relay loop sees it."""

    def receive(self) -> list[Event]:
        """Block until data arrives; the events one read completed (maybe none: a relay
        yields after each call, so a flooding client cannot hold the worker). Raise
        ConnectionClosed at end of stream."""
        ...

    def send(self, messages: Sequence[Outgoing]) -> None:
        """Send whole messages, in order."""
        ...

    def send_bytes(self, data: bytes) -> None:
        """Send already framed bytes, after the rest of any unfinished write; blocks."""
        ...

    def ping(self, payload: bytes = b"") -> None: ...

    def pong(self, payload: bytes = b"") -> None: ...

    def send_close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once; later calls do nothing)."""
        ...

    def shutdown(self, drain: bool = False) -> None:
        """Close the transport; with ``drain``, wait (briefly) for the client to close first.

        Only the greenlet that receives may call it."""
        ...

    def abort(self) -> None:
        """Drop the connection from any greenlet: the receiving greenlet then gets
        ConnectionClosed and shuts down."""
        ...


@runtime_checkable
class NonBlockingWrites(Protocol):
    """Writes without blocking: the hub then writes fan-out messages itself, in one system call
    per socket and burst; without it, each websocket's writer greenlet sends.

    ``send_nowait`` writes already framed bytes and returns how many went out; when only part
    did, the websocket keeps the rest (it owns the unsent bytes) and sends it first in
    ``finish_write()`` or any later write, so frames never interleave. ``close_sent`` tells
    whether the close frame went out. ``write_timeout``: a write that makes no progress for
    that long raises ConnectionClosed (a vanished peer whose socket buffer is full)."""

    close_sent: bool
    write_timeout: float | None

    def send_nowait(self, data: bytes) -> int: ...

    def finish_write(self) -> None: ...


@runtime_checkable
class Parkable(Protocol):
    """A websocket the event loop can watch, served with no greenlet while idle.

    ``can_park`` says whether this one can (a TLS socket cannot). ``park(callback)`` has the
    event loop call ``callback`` (which must not block) once the socket is readable;
    ``receive_nowait`` returns what arrived, None when nothing whole did."""

    can_park: bool

    def park(self, callback: Callable[[], None]) -> None: ...

    def receive_nowait(self) -> list[Event] | None: ...
