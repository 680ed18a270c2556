"""The process-wide Redis hub: one pub/sub connection shared by every websocket of the process.

The hub reference-counts channels (SUBSCRIBE when the first websocket wants one, UNSUBSCRIBE when
the last one leaves), reads Redis in a single greenlet and hands each message to the sinks of
its channel. Each message is wrapped once in an ``Outgoing`` whose frame is encoded at most once,
whatever the number of websockets it goes to.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import redis

from .exceptions import ServiceUnavailable
from .frames import encode_message
from .redis_store import _connection_key, redis_client

logger = logging.getLogger("ws4redis_gevent.hub")

IDLE_TIMEOUT = 30.0


class Outgoing:
    """A message on its way to websockets: payload, channel, and its frame, encoded once."""

    __slots__ = ("payload", "channel", "_frame")

    def __init__(self, payload: bytes, channel: bytes | None = None) -> None:
        self.payload = payload
        self.channel = channel
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The websocket frame carrying this message (text if UTF-8, else binary)."""
        if self._frame is None:
            self._frame = encode_message(self.payload)
        return self._frame

    def __repr__(self) -> str:
        return f"<Outgoing {self.channel!r} {self.payload[:40]!r}>"


class Sink(Protocol):
    """Whatever receives a channel's messages from the hub (a websocket's outbox)."""

    def deliver(self, message: Outgoing) -> bool:
        """Queue ``message``; True if the sink needs a ``flush`` afterwards."""
        ...

    def flush(self) -> None:
        """Send what was delivered since the last flush."""
        ...


class Hub:
    """One Redis PubSub per process, fanning messages out to the websockets subscribed to them."""

    def __init__(self, client: redis.Redis, reconnect_backoff: tuple[float, float] = (0.1, 5.0)):
        self._client = client
        self._pubsub = client.pubsub()
        self._routes: dict[bytes, set[Sink]] = {}
        self._confirmed: dict[bytes, gevent.event.Event] = {}
        self._pending: dict[bytes, int] = {}
        self._dirty: list[Sink] = []
        self._command_lock = gevent.lock.RLock()
        self._reader: gevent.Greenlet | None = None
        self._backoff = reconnect_backoff
        self._connection_lost: list[Callable[[], None]] = []
        self.reconnects = 0

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, channels: Iterable[bytes], sink: Sink, timeout: float = 5.0) -> None:
        """Route ``channels`` to ``sink``; returns once Redis has confirmed every subscription.

        Raises:
            ServiceUnavailable: Redis could not be reached or did not confirm in time.
        """
        channels = list(channels)
        new = [ch for ch in channels if not self._routes.get(ch)]
        for channel in channels:
            self._routes.setdefault(channel, set()).add(sink)
        for channel in new:
            self._confirmed[channel] = gevent.event.Event()
            self._pending[channel] = self._pending.get(channel, 0) + 1
        self._ensure_reader()
        try:
            if new:
                self._command(self._pubsub.subscribe, new)
            with gevent.Timeout(timeout, ServiceUnavailable("Redis did not confirm in time")):
                for channel in channels:
                    self._confirmed[channel].wait()
        except (redis.RedisError, OSError) as exc:
            self.unsubscribe(channels, sink)
            raise ServiceUnavailable(f"cannot subscribe on Redis: {exc}") from exc
        except ServiceUnavailable:
            self.unsubscribe(channels, sink)
            raise

    def _command(self, method: Callable[..., Any], channels: list[bytes]) -> None:
        # One greenlet at a time: redis-py's PubSub opens its connection lazily, and two
        # greenlets racing there would each open one, the reader reading only the last.
        with self._command_lock:
            method(*channels)

    def unsubscribe(self, channels: Iterable[bytes], sink: Sink) -> None:
        """Stop routing ``channels`` to ``sink``; release the channels nobody wants any more."""
        released = []
        for channel in channels:
            sinks = self._routes.get(channel)
            if sinks is None:
                continue
            sinks.discard(sink)
            if not sinks:
                del self._routes[channel]
                self._confirmed.pop(channel, None)
                released.append(channel)
        if released:
            try:
                self._command(self._pubsub.unsubscribe, released)
            except (redis.RedisError, OSError):
                # Redis is away: the reader unsubscribes again when the resubscription after
                # the reconnect confirms a channel that has no route.
                logger.debug("unsubscribe deferred until Redis is back: %r", released)

    def subscribers(self, channel: bytes) -> int:
        """How many sinks receive ``channel`` in this process."""
        return len(self._routes.get(channel, ()))

    @property
    def channels(self) -> set[bytes]:
        """The channels this process routes."""
        return set(self._routes)

    def on_connection_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the hub's greenlet) each time the Redis connection is lost."""
        self._connection_lost.append(callback)

    # -- reading ---------------------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._read_forever)

    def _read_forever(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                self._read_until_error()
            except Exception as exc:
                # Whatever happens, the hub must go on: log it and reconnect.
                self.reconnects += 1
                # Replies in flight died with the connection; the resubscription confirms anew.
                self._pending.clear()
                logger.warning("Redis pub/sub connection lost (%s); retrying in %.1fs", exc, delay)
                for callback in self._connection_lost:
                    callback()
                gevent.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
            else:
                delay = self._backoff[0]

    def _read_until_error(self) -> None:
        # A blocking read in a greenlet of its own: redis-py serves replies it has already
        # buffered before touching the socket, so bursts are drained, never stalled.
        # Messages are dispatched as long as some are buffered; the sinks that received any
        # are flushed when the buffer runs dry, so that a burst leaves in one write per socket.
        get_message = self._pubsub.get_message
        dispatch = self._dispatch
        while True:
            message = get_message(timeout=0)
            if message is None:
                self._flush()
                # A finite timeout: redis-py 8's get_message(timeout=None) fails before the
                # first subscription. Returning None now and then costs nothing.
                message = get_message(timeout=IDLE_TIMEOUT)
                if message is None:
                    continue
            dispatch(message)

    def _flush(self) -> None:
        dirty = self._dirty
        self._dirty = []
        for sink in dirty:
            sink.flush()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if kind == "message":
            sinks = self._routes.get(channel)
            if sinks:
                outgoing = Outgoing(message["data"], channel)
                mark = self._dirty.append
                for sink in sinks:
                    if sink.deliver(outgoing):
                        mark(sink)
        elif kind == "subscribe":
            # Count replies: one left over from an earlier subscribe/unsubscribe cycle of the
            # channel must not confirm the SUBSCRIBE sent for a new websocket.
            pending = self._pending.get(channel, 0)
            if pending > 1:
                self._pending[channel] = pending - 1
                return
            self._pending.pop(channel, None)
            confirmed = self._confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            elif not self._routes.get(channel):
                self._command(self._pubsub.unsubscribe, [channel])

    def close(self) -> None:
        """Stop reading and release the Redis connection."""
        if self._reader is not None:
            self._reader.kill()
            self._reader = None
        self._routes.clear()
        self._confirmed.clear()
        self._pending.clear()
        self._pubsub.reset()


_hubs: dict[tuple[int, str], Hub] = {}
_hubs_lock = threading.Lock()


def get_hub(connection: dict[str, Any] | str) -> Hub:
    """The hub of this process for these connection settings (a new one after a fork)."""
    key = (os.getpid(), _connection_key(connection))
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = Hub(redis_client(connection))
        return hub


def close_hubs() -> None:
    """Close every hub of this process (tests, worker shutdown)."""
    with _hubs_lock:
        for hub in _hubs.values():
            hub.close()
        _hubs.clear()
