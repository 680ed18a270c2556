"""The process-wide Redis hub: one pub/sub connection shared by every websocket of the process.

The hub reference-counts channels (SUBSCRIBE when the first websocket wants one, UNSUBSCRIBE when
the last one leaves), reads Redis in a single greenlet and hands each message to the sinks of
its channel. Each message is wrapped once in an ``Outgoing`` whose frame is encoded at most once,
whatever the number of websockets it goes to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import redis

from . import stats
from .envelope import (
    MalformedEnvelope,
    is_history,
    is_presence,
    open_history,
    open_presence,
    unwrap,
)
from .exceptions import ServiceUnavailable
from .keys import PRESENCE_EVENTS_SUFFIX, loggable
from .outgoing import Outgoing, PresenceFrame

logger = logging.getLogger("ws4redis_gevent.hub")

IDLE_TIMEOUT = 30.0
FLUSH_EVERY = 64
LINGER = 2.0  # seconds a channel stays subscribed after its last websocket left


class Sink(Protocol):
    """Whatever receives a channel's messages from the hub (a websocket's outbox)."""

    def deliver(self, message: Outgoing) -> bool:
        """Queue ``message``; True if the sink needs a ``flush`` afterwards."""
        ...

    def flush(self) -> None:
        """Send what was delivered since the last flush."""
        ...

    def resync_channel(self, channel: bytes) -> bool:
        """A message of ``channel`` was lost (malformed): tell the client if it tracks positions;
        True if the sink needs a ``flush`` afterwards."""
        ...


class HubInterface(Protocol):
    """What the rest of the library asks of a hub: ``Hub``, or ``ClusterHub`` on a cluster."""

    @property
    def reconnects(self) -> int: ...

    @property
    def connected(self) -> bool:
        """Whether the hub is connected to Redis (its subscriptions confirmed)."""
        ...

    def subscribe(
        self, channels: Iterable[bytes], sink: Sink, timeout: float | None = 5.0
    ) -> None: ...

    def unsubscribe(self, channels: Iterable[bytes], sink: Sink, linger: bool = True) -> None: ...

    def subscribers(self, channel: bytes) -> int: ...

    @property
    def channels(self) -> set[bytes]: ...

    def on_connection_lost(self, callback: Callable[[Hub], None]) -> None: ...

    def close(self) -> None: ...


class Hub:
    """One Redis PubSub per process, fanning messages out to the websockets subscribed to them."""

    def __init__(
        self,
        client: redis.Redis,
        reconnect_backoff: tuple[float, float] = (0.1, 1.0),
        write_window: float = 0.0,
    ):
        self._client = client
        # Seconds a burst may wait for more messages before it is flushed (0: flush at once).
        self._write_window = write_window
        self._pubsub = client.pubsub()
        self._routes: dict[bytes, set[Sink]] = {}
        self._confirmed: dict[bytes, gevent.event.Event] = {}
        self._pending: dict[bytes, int] = {}
        self._lingering: dict[bytes, float] = {}
        self._reaper: gevent.Greenlet | None = None
        self._dirty: list[Sink] = []
        self._command_lock = gevent.lock.RLock()
        self._reader: gevent.Greenlet | None = None
        self._backoff = reconnect_backoff
        self._connection_lost: list[Callable[[Hub], None]] = []
        self.reconnects = 0
        self.malformed = 0  # messages dropped because their envelope did not parse
        # True from Redis' first subscription reply until the connection is lost, and again
        # from the first reply of the resubscription (the health endpoint reports it).
        self.connected = False

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, channels: Iterable[bytes], sink: Sink, timeout: float | None = 5.0) -> None:
        """Route ``channels`` to ``sink``; returns once Redis has confirmed every subscription.

        Raises:
            ServiceUnavailable: Redis could not be reached or did not confirm in time.
        """
        channels = list(channels)
        # A lingering channel is still subscribed on Redis: taking it back costs nothing.
        new = [ch for ch in channels if not self._routes.get(ch) and ch not in self._lingering]
        for channel in channels:
            self._lingering.pop(channel, None)
            self._routes.setdefault(channel, set()).add(sink)
        for channel in new:
            self._confirmed[channel] = gevent.event.Event()
            self._pending[channel] = self._pending.get(channel, 0) + 1
        self._ensure_reader()
        try:
            if new:
                self._command(self._pubsub.subscribe, new)
            waiting = [self._confirmed[ch] for ch in channels if not self._confirmed[ch].is_set()]
            if waiting:
                with gevent.Timeout(timeout, ServiceUnavailable("Redis did not confirm in time")):
                    for event in waiting:
                        event.wait()
        except (redis.RedisError, OSError) as exc:
            for channel in new:  # no reply will come for a SUBSCRIBE that was never sent
                self._pending.pop(channel, None)
            self.unsubscribe(channels, sink, linger=False)
            raise ServiceUnavailable(f"cannot subscribe on Redis: {exc}") from exc
        except ServiceUnavailable:
            self.unsubscribe(channels, sink, linger=False)
            raise

    def _command(self, method: Callable[..., Any], channels: list[bytes]) -> None:
        # One greenlet at a time: redis-py's PubSub opens its connection lazily, and two
        # greenlets racing there would each open one, the reader reading only the last.
        with self._command_lock:
            method(*channels)

    def unsubscribe(self, channels: Iterable[bytes], sink: Sink, linger: bool = True) -> None:
        """Stop routing ``channels`` to ``sink``; release the channels nobody wants any more.

        A released channel stays subscribed on Redis for LINGER seconds, so that a client
        reconnecting right away (a page reload, a reconnect storm) costs no round trip.
        """
        released = []
        now = time.monotonic()
        for channel in channels:
            sinks = self._routes.get(channel)
            if sinks is None:
                continue
            sinks.discard(sink)
            if not sinks:
                del self._routes[channel]
                if linger:
                    self._lingering[channel] = now
                else:
                    self._confirmed.pop(channel, None)
                    released.append(channel)
        if self._lingering and (self._reaper is None or self._reaper.dead):
            self._reaper = gevent.spawn(self._reap_lingering)
        self._release(released)

    def _reap_lingering(self) -> None:
        while self._lingering:
            gevent.sleep(LINGER / 2)
            limit = time.monotonic() - LINGER
            expired = [ch for ch, since in self._lingering.items() if since <= limit]
            for channel in expired:
                del self._lingering[channel]
                self._confirmed.pop(channel, None)
            self._release(expired)

    def _release(self, released: list[bytes]) -> None:
        if released:
            try:
                self._command(self._pubsub.unsubscribe, released)
            except (redis.RedisError, OSError):
                # Redis is away: the reader unsubscribes again when the resubscription after
                # the reconnect confirms a channel that has no route.
                logger.debug(
                    "unsubscribe deferred until Redis is back: %r", [loggable(c) for c in released]
                )

    def subscribers(self, channel: bytes) -> int:
        """How many sinks receive ``channel`` in this process."""
        return len(self._routes.get(channel, ()))

    @property
    def channels(self) -> set[bytes]:
        """The channels this process routes."""
        return set(self._routes)

    def on_connection_lost(self, callback: Callable[[Hub], None]) -> None:
        """Call ``callback(hub)`` (in the hub's greenlet) each time its connection is lost;
        ``hub`` is the one whose channels lost messages (on a cluster, one shard's)."""
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
                self.connected = False
                stats.connection_lost()
                # Replies in flight died with the connection; the resubscription confirms anew,
                # and until it does no websocket may take a channel for subscribed.
                self._pending.clear()
                for confirmed in self._confirmed.values():
                    confirmed.clear()
                logger.warning("Redis pub/sub connection lost (%s); retrying in %.1fs", exc, delay)
                for callback in self._connection_lost:
                    callback(self)
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
        window = self._write_window
        batched = 0
        arrived = 0.0  # when the first message of the burst arrived (for the hub lag metric)
        while True:
            message = get_message(timeout=0)
            if message is None and batched and window:
                # The write window (WS4REDIS_WRITE_WINDOW): messages spaced out would cost one
                # write per socket each; gathering them until the burst's first is ``window``
                # old sends them in one write per socket.
                left = arrived + window - time.monotonic()
                if left > 0:
                    message = get_message(timeout=left)
            # Flush when the buffer runs dry, and every FLUSH_EVERY messages within a long
            # burst, so that the first messages leave before the whole burst is dispatched.
            if message is None or batched >= FLUSH_EVERY:
                self._flush(arrived)
                if batched >= FLUSH_EVERY:
                    # Redis may keep the buffer full for ever (a publish flood): let the other
                    # greenlets (writers, readers, HTTP requests) run between batches.
                    gevent.sleep(0)
                batched = 0
            if message is None:
                # A finite timeout: redis-py 8's get_message(timeout=None) fails before the
                # first subscription. Returning None now and then costs nothing.
                message = get_message(timeout=IDLE_TIMEOUT)
                if message is None:
                    continue
            if not batched:
                arrived = time.monotonic()
            dispatch(message)
            batched += 1

    def _flush(self, arrived: float = 0.0) -> None:
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        for sink in dirty:
            sink.flush()
        if arrived:
            stats.hub_lag(time.monotonic() - arrived)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if kind == "message":
            sinks = self._routes.get(channel)
            if sinks:
                data = message["data"]
                if data[:1] == b"\x00":
                    try:
                        outgoing = _unwrap(data, channel)
                    except MalformedEnvelope as exc:
                        self._malformed(channel, sinks, exc)
                        return
                else:
                    outgoing = Outgoing(data, channel)
                mark = self._dirty.append
                for sink in sinks:
                    if sink.deliver(outgoing):
                        mark(sink)
        elif kind == "subscribe":
            if not self.connected:
                self.connected = True
                stats.connection_restored()
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
            elif not self._routes.get(channel) and channel not in self._lingering:
                self._command(self._pubsub.unsubscribe, [channel])

    def _malformed(self, channel: bytes, sinks: set[Sink], exc: MalformedEnvelope) -> None:
        # Not from a publisher of ours (they wrap every payload that could look like an
        # envelope): dropped, counted, and the websockets that track positions resync.
        self.malformed += 1
        stats.STATS.dropped[stats.MALFORMED] += 1
        if self.malformed in _LOG_MALFORMED or self.malformed % 1000 == 0:
            logger.warning(
                "dropped a malformed message on %r (%s; %d so far)",
                loggable(channel),
                exc,
                self.malformed,
            )
        for sink in sinks:
            if sink.resync_channel(channel):
                self._dirty.append(sink)

    def close(self) -> None:
        """Stop reading and release the Redis connection."""
        for greenlet in (self._reader, self._reaper):
            if greenlet is not None:
                greenlet.kill()
        self._reader = self._reaper = None
        self._lingering.clear()
        self._routes.clear()
        self._confirmed.clear()
        self._pending.clear()
        self.connected = False
        self._pubsub.reset()


_LOG_MALFORMED = frozenset((1, 10, 100))
PRESENCE_EVENTS = PRESENCE_EVENTS_SUFFIX.encode()


def _unwrap(data: bytes, channel: bytes) -> Outgoing:
    if is_presence(data):
        # Only on an events channel, which only websockets that asked for presence receive.
        if not channel.endswith(PRESENCE_EVENTS):
            raise MalformedEnvelope(f"presence envelope on {channel[:60]!r}")
        return PresenceFrame(open_presence(data), channel)
    position = None
    if is_history(data):
        data, position = open_history(data)
    payload, binary = unwrap(data)
    return Outgoing(payload, channel, position, binary)
