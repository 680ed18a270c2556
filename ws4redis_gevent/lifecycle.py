"""The websockets open in this process: the relay registers each one while it lives, and the
servers (gunicorn's worker, uWSGI's backend, runserver) close them all when they stop.

A module of its own, below the relay, so that a backend can close every websocket without
importing the relay that runs them."""

from __future__ import annotations

import weakref
from typing import Protocol

from .frames import CloseCode


class Closable(Protocol):
    """A live websocket, as shutdown sees it (a ``relay.Relay``)."""

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None: ...


_live: weakref.WeakSet[Closable] = weakref.WeakSet()


def register(websocket: Closable) -> None:
    """Count ``websocket`` as open (held weakly: a forgotten one is gone when collected)."""
    _live.add(websocket)


def unregister(websocket: Closable) -> None:
    """``websocket`` has ended."""
    _live.discard(websocket)


def live_relays() -> list[Closable]:
    """The websockets open in this process."""
    return list(_live)


def close_all(code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> int:
    """Close every websocket of this process with ``code``; returns how many."""
    relays = live_relays()
    for relay in relays:
        relay.close(code, reason)
    return len(relays)
