"""The timers of every websocket of the process, kept by one greenlet (``Keepalive``): protocol
pings that find dead peers, the application heartbeat, presence refreshes."""

from __future__ import annotations

import heapq
import itertools
import logging
import time
import weakref
from typing import Protocol

import gevent
import gevent.event

from .frames import Opcode, encode_frame

logger = logging.getLogger("ws4redis_gevent.relay")

PING_FRAME = encode_frame(Opcode.PING, b"ws4redis")
MIN_TICK = 0.01


class Timer(Protocol):
    """What the Keepalive calls: ``tick(now)`` returns when to be called next, never blocks;
    a ``finished`` timer is dropped."""

    finished: bool

    def tick(self, now: float) -> float: ...


class Keepalive:
    """The timers of every websocket of the process, in one greenlet.

    A heap orders the websockets by when each is next due; the greenlet sleeps until the
    first, calls its ``tick`` and puts it back with the time ``tick`` returns. It runs while
    websockets are open, and starts again with the next one.
    """

    def __init__(self) -> None:
        # Weak references: a closed websocket is released at once, not when next due.
        self._heap: list[tuple[float, int, weakref.ref[Timer]]] = []
        self._order = itertools.count()
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def add(self, relay: Timer) -> None:
        due = relay.tick(time.monotonic())
        if not self._heap or due < self._heap[0][0]:
            self._wake.set()
        heapq.heappush(self._heap, (due, next(self._order), weakref.ref(relay)))
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        heap = self._heap
        try:
            while heap:
                now = time.monotonic()
                while heap and heap[0][0] <= now:
                    ref = heapq.heappop(heap)[2]
                    relay = ref()
                    if relay is None or relay.finished:
                        continue
                    try:
                        # Never due again at once: the loop would not yield (e.g. intervals of 0).
                        due = max(relay.tick(now), now + MIN_TICK)
                    except Exception:
                        logger.exception("websocket timers failed")
                        due = now + 1.0
                    heapq.heappush(heap, (due, next(self._order), ref))
                    del relay
                if heap:
                    self._wake.clear()
                    self._wake.wait(max(0.0, heap[0][0] - time.monotonic()))
        finally:
            self._greenlet = None


_keepalive = Keepalive()


def schedule_timer(timer: Timer) -> None:
    """Have the process's Keepalive call ``timer.tick`` (held weakly, until it finishes)."""
    _keepalive.add(timer)
