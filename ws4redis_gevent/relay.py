"""The relay between one websocket and Redis, written once for every backend.

Reading: where the backend can watch its socket (``park``: gevent's and uWSGI's, on plain
sockets), an idle websocket has no greenlet at all; the event loop watches its socket, and when
frames arrive a greenlet starts, handles them (publishing, answering pings) and ends once
nothing is left to read (``Relay.start``). Elsewhere (TLS sockets) the request's own greenlet
receives in a loop until the websocket closes (``Relay.run``).

Writing: the hub writes what it delivers straight to the socket (``Outbox.flush``); only when a
socket cannot take everything at once does a writer greenlet start, finish the job and end.

Timers: one greenlet per process keeps those of every websocket (``keepalive.Keepalive``:
protocol pings that detect dead peers, the application heartbeat of WS4REDIS_HEARTBEAT). The
queue of what waits to be sent is the websocket's ``outbox.Outbox``.

An idle websocket thus costs its socket, a watcher and a few small objects (a parked greenlet
costs 8 KiB more).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import gevent
import gevent.event
import redis

from . import lifecycle, stats
from .exceptions import ConnectionClosed, ProtocolError
from .frames import Close, CloseCode, Message, Ping
from .hub import Hub
from .keepalive import PING_FRAME, _keepalive
from .outbox import RESYNC_ALL, Outbox
from .outgoing import Outgoing
from .rate import TokenBucket
from .redis_store import RedisMessage
from .settings import Settings
from .transport import NonBlockingWrites, Parkable, WebSocket

logger = logging.getLogger("ws4redis_gevent.relay")

CLOSE_TIMEOUT = 5.0
# How long a websocket may read and handle frames at one wake-up before it yields to the event
# loop (gevent switches greenlets every 5 ms; each read, READ_SIZE at most, is a few ms of
# parsing at worst).
READ_SLICE = 0.002


class Relay:
    """Runs one websocket until it closes; ``subscriber`` publishes what the client sends."""

    __slots__ = (
        "websocket",
        "outbox",
        "subscriber",
        "settings",
        "echo",
        "subscribed",
        "close_code",
        "close_reason",
        "finished",
        "started",
        "received",
        "received_bytes",
        "_last_received",
        "_heartbeat",
        "_closing",
        "_close_timer",
        "_writer",
        "_ping_sent",
        "_next_check",
        "_beat",
        "_next_beat",
        "_publish_bucket",
        "_publish_bytes_bucket",
        "_writes",
        "_parkable",
        "_ping_bucket",
        "_on_end",
        "_end_in_loop",
        "__weakref__",
    )

    def __init__(
        self,
        websocket: WebSocket,
        outbox: Outbox,
        subscriber: Any,
        settings: Settings,
        echo: bool = False,
        subscribed: Collection[bytes] = (),
    ) -> None:
        self.websocket = websocket
        self.outbox = outbox
        self.subscriber = subscriber
        self.settings = settings
        self.echo = echo
        self.subscribed = subscribed
        self.close_code: int | None = None
        self.close_reason = ""
        self.started = time.monotonic()
        self.received = 0  # messages from the client
        self.received_bytes = 0
        self._last_received = time.monotonic()
        self._heartbeat = settings.heartbeat.encode("utf-8") if settings.heartbeat else None
        self._closing = False  # set once the close frame is on its way, or the peer is gone
        self._close_timer: gevent.Greenlet | None = None
        self._writer: gevent.Greenlet | None = None
        self._ping_sent: float | None = None
        self.finished = False
        now = time.monotonic()
        self._next_check = now + settings.ping_interval
        self._beat = settings.heartbeat_interval if self._heartbeat else None
        self._next_beat = now + self._beat if self._beat else float("inf")
        # Made at the first message or ping: most websockets never send either.
        self._publish_bucket: TokenBucket | None = None
        self._publish_bytes_bucket: TokenBucket | None = None
        self._ping_bucket: TokenBucket | None = None
        self._on_end: Callable[[], Any] | None = None
        self._end_in_loop = False
        outbox.on_overflow = self._on_overflow
        outbox.on_backlog = self._start_writer
        # Optional capabilities, learnt once (transport.py).
        self._writes: NonBlockingWrites | None = None
        if isinstance(websocket, NonBlockingWrites):
            self._writes = websocket
        self._parkable: Parkable | None = None
        if isinstance(websocket, Parkable) and websocket.can_park:
            self._parkable = websocket
        if self._writes is not None:
            # A peer that takes no byte for this long would not have answered a ping either.
            self._writes.write_timeout = settings.ping_interval + settings.ping_timeout

    def _on_overflow(self) -> None:
        logger.info("websocket too slow (%s): closing", self.outbox.overflow_cause)
        gevent.spawn(self.close, CloseCode.POLICY_VIOLATION, "too slow")

    @property
    def can_park(self) -> bool:
        """Whether the websocket can be served without a greenlet while idle (``start``)."""
        return self._parkable is not None

    def run(self) -> None:
        """Relay until the websocket closes, in this greenlet; always releases the socket and
        the writer."""
        self._begin()
        try:
            self._guarded(self._read_loop)
        finally:
            self._end()

    def start(self, on_end: Callable[[], Any] | None = None, end_in_loop: bool = False) -> None:
        """Relay with no greenlet while the websocket is idle, and return at once.

        The websocket's socket is watched by the event loop; when frames arrive, a greenlet
        handles them and ends when nothing is left to read. ``on_end`` is called once the
        websocket has ended and its socket is closed: in a greenlet, or with ``end_in_loop``
        (``on_end`` never blocks) right in the event loop when the client ends its stream while
        nothing else is under way, the usual end of an idle websocket, which then costs no
        greenlet at all. Needs ``can_park``.
        """
        self._on_end = on_end
        self._end_in_loop = end_in_loop
        self._begin()
        self._park()

    def _begin(self) -> None:
        lifecycle.register(self)
        _keepalive.add(self)
        outbox = self.outbox
        if outbox.overflowed:
            # More than max_pending_messages arrived while the handshake was under way.
            outbox.clear()
            self._on_overflow()
            return
        if outbox.resync:
            outbox.resync = False
            outbox.put_first([Outgoing(RESYNC_ALL)])
        outbox.flush()  # persisted or recovered messages, and what arrived meanwhile

    def _readable(self) -> None:
        # Called by the event loop, which must never block: frames go to a greenlet (it may
        # publish, and wait for the socket to take a reply).
        if not self._end_in_loop or self._writer is not None or self._close_timer is not None:
            gevent.spawn(self._read_ready)
            return
        try:
            events = self._receive_slice(time.monotonic() + READ_SLICE)
        except ConnectionClosed:
            self._end()  # nothing here blocks: no drain once the client's stream has ended
            return
        except Exception:
            events = None  # a protocol error: the greenlet meets it again, and closes
        else:
            if not events:  # woken for nothing whole yet
                if events is not None:
                    self._last_received = time.monotonic()
                self._park()
                return
        gevent.spawn(self._read_ready, events)

    def _read_ready(self, events: list[Any] | None = None) -> None:
        parked = False
        try:
            parked = self._guarded(self._read_available, events)
        finally:
            if not parked:
                self._end()

    def _read_available(self, events: list[Any] | None) -> bool:
        """Handle what the socket holds for at most READ_SLICE seconds; park again (True) or
        end (False).

        The time slice is what keeps the worker fair: a client that floods frames, however
        small or empty, yields to every other socket of the worker once its slice is spent
        (plus at most one read, READ_SIZE bytes). If more is waiting, the event loop wakes this
        websocket again at its next turn; nothing stays behind in user space (the parser keeps
        only an incomplete frame, ``park`` sees bytes read ahead). Big frames, cheap to read,
        still arrive in a few wake-ups.
        """
        deadline = time.monotonic() + READ_SLICE
        while True:
            if events is None:
                events = self._receive_slice(deadline)
                if events is None:  # nothing more to read: idle again
                    self._park()
                    return True
            self._last_received = time.monotonic()
            if self._handle(events):
                return False
            if self._last_received >= deadline:
                self._park()
                return True
            events = None

    def _parked(self) -> Parkable:
        if self._parkable is None:
            raise RuntimeError("this websocket cannot be parked (can_park is false)")
        return self._parkable

    def _park(self) -> None:
        self._parked().park(self._readable)

    def _receive_slice(self, deadline: float) -> list[Any] | None:
        """Read until events complete, the socket is empty or ``deadline`` passed: the
        events; [] when bytes were read but completed none; None when there was nothing."""
        received: list[Any] | None = None
        while True:
            events = self._parked().receive_nowait()
            if events is None:
                return received
            if events or time.monotonic() >= deadline:
                return events
            received = events

    def _guarded(self, body: Callable[..., Any], *args: Any) -> Any:
        """Run ``body``; a failure closes the websocket with the fitting code (False)."""
        try:
            return body(*args)
        except ProtocolError as exc:
            if exc.code == CloseCode.MESSAGE_TOO_BIG:
                stats.STATS.dropped[stats.SIZE] += 1
            logger.info("closing websocket: %s", exc)
            self.close(exc.code, exc.reason)
        except ConnectionClosed:
            pass
        except redis.RedisError as exc:
            logger.warning("cannot publish, closing websocket: %s", exc)
            self.close(CloseCode.TRY_AGAIN_LATER, "message queue unavailable")
        except Exception:
            logger.exception("websocket relay failed")
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt landing in this greenlet: the process is going
            # away, tell the client so before the socket goes.
            if not isinstance(exc, gevent.GreenletExit):
                self.close(CloseCode.GOING_AWAY, "server shutting down")
            raise
        return False

    def _end(self) -> None:
        if not self.finished:
            self._count_totals()
        self.finished = True
        self.outbox.detach()
        lifecycle.unregister(self)
        try:
            if self._writer is not None:
                self._writer.kill()
            if self._close_timer is not None:
                self._close_timer.kill()
            self.websocket.shutdown(drain=True)
        finally:
            if self._on_end is not None:
                on_end, self._on_end = self._on_end, None
                on_end()

    def _count_totals(self) -> None:
        # The process's totals take over this websocket's figures when it ends.
        totals = stats.STATS
        totals.sent += self.outbox.sent
        totals.sent_bytes += self.outbox.sent_bytes
        totals.received += self.received
        totals.received_bytes += self.received_bytes

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake: send a close frame; the client has CLOSE_TIMEOUT
        seconds to answer before the connection is dropped."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        if not self._closing:
            stats.STATS.closes_sent[code] += 1
        if self._close_timer is None:
            # Armed first: sending the close frame waits for a frame being written to finish.
            self._close_timer = gevent.spawn_later(CLOSE_TIMEOUT, self.websocket.abort)
        self._closing = True
        with contextlib.suppress(ConnectionClosed):
            self.websocket.send_close(code, reason)

    # -- reading ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        deadline = time.monotonic() + READ_SLICE
        while True:
            events = self.websocket.receive()
            self._last_received = now = time.monotonic()
            if self._handle(events):
                return
            if now >= deadline:
                # A read returns at once while a client floods: yield once the time slice is
                # spent (see _read_available).
                gevent.sleep(0)
                deadline = time.monotonic() + READ_SLICE

    def _handle(self, events: list[Any]) -> bool:
        """Act on received events; True once the client's close frame came."""
        for event in events:
            if isinstance(event, Message):
                if not self._closing:
                    self._on_message(event.data)
            elif isinstance(event, Ping):
                self._spend_ping_token("ping rate exceeded")
                self.websocket.pong(event.payload)
            elif isinstance(event, Close):
                self._on_close(event)
                return True
        return False

    def _on_close(self, close: Close) -> None:
        if self.close_code is None:
            self.close_code = close.code
            self.close_reason = close.reason
        stats.STATS.closes_received[close.code] += 1
        # Echo the client's code, as section 5.5.1 suggests; 1005 cannot go on the wire.
        code = CloseCode.NORMAL if close.code == CloseCode.NO_STATUS else close.code
        if not self._closing:
            stats.STATS.closes_sent[code] += 1
        self._closing = True  # no message after our close frame
        with contextlib.suppress(ConnectionClosed):
            self.websocket.send_close(code)

    def _on_message(self, data: bytes | str) -> None:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self.received += 1
        self.received_bytes += len(payload)
        if self._heartbeat is not None and payload == self._heartbeat:
            self._spend_ping_token("heartbeat rate exceeded")
            self.websocket.send([Outgoing(self._heartbeat)])
            return
        self._spend_publish_token()
        publishers = self.subscriber.publish_targets
        if not self.echo:
            for channel in publishers:
                encoded = channel.encode("utf-8")
                if encoded in self.subscribed:
                    self.outbox.expect_echo(encoded, payload)
        if publishers:
            self._spend_publish_bytes(len(payload))
            # The frame's type travels with the message (envelope.wrap), so binary stays binary.
            self.subscriber.publish_message(RedisMessage(payload, not isinstance(data, str)))

    def _spend_publish_token(self) -> None:
        """``publish_rate`` messages a second, bursts of ``publish_burst``; past it, 1008."""
        rate = self.settings.publish_rate
        if rate is None:
            return
        if self._publish_bucket is None:
            self._publish_bucket = TokenBucket(rate, self.settings.publish_burst)
        if not self._publish_bucket.take():
            stats.STATS.dropped[stats.RATE_LIMIT] += 1
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "publish rate exceeded")

    def _spend_publish_bytes(self, size: int) -> None:
        """``publish_bytes_rate`` bytes a second, bursts of one whole message at least.

        What clients publish is what Redis writes to every hub subscribed to the channel: a
        hub that cannot read as fast is disconnected by Redis at its pub/sub output limit
        (``client-output-buffer-limit pubsub``), which loses messages for every websocket of
        that worker. The message rate alone lets 1 MiB messages through 50 times a second."""
        rate = self.settings.publish_bytes_rate
        if rate is None:
            return
        if self._publish_bytes_bucket is None:
            burst = max(rate, self.settings.max_message_size)
            self._publish_bytes_bucket = TokenBucket(rate, burst)
        if not self._publish_bytes_bucket.take(size):
            stats.STATS.dropped[stats.RATE_LIMIT] += 1
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "publish byte rate exceeded")

    def _spend_ping_token(self, reason: str) -> None:
        """Pings and heartbeats together: ``ping_rate`` a second, bursts of ``ping_burst``.

        Each costs the worker a frame to write back; a client asking faster than any keepalive
        needs is closed with 1008 rather than answered without end.
        """
        rate = self.settings.ping_rate
        if rate is None:
            return
        if self._ping_bucket is None:
            self._ping_bucket = TokenBucket(rate, self.settings.ping_burst)
        if not self._ping_bucket.take():
            # Logged by _guarded, and counted with the closes sent (1008).
            raise ProtocolError(CloseCode.POLICY_VIOLATION, reason)

    # -- writing ---------------------------------------------------------------------------

    def _start_writer(self) -> None:
        if self._closing:
            self.outbox.clear()  # nothing goes out after the close frame
        elif self._writer is None:
            self._writer = gevent.spawn(self._write_backlog)

    def _write_backlog(self) -> None:
        """The writer greenlet: send what the socket could not take at once, then end."""
        try:
            if self._writes is not None:
                self._writes.finish_write()  # the end of a frame a flush wrote only in part
            while not self._closing and (data := self.outbox.take()):
                self.websocket.send_bytes(data)
            if self._closing:
                self.outbox.clear()  # nothing goes out after the close frame
        except ConnectionClosed as exc:
            self.outbox.clear()
            self._closing = True
            close_sent = self._writes is not None and self._writes.close_sent
            if self._close_timer is None and not close_sent:
                # Not closing: the peer is gone. Wake the reader, which would otherwise wait
                # forever on it. (While closing, the close frame may still be on its way; the
                # close timer ends the connection if the client never answers it.)
                logger.info("websocket write failed, dropping the connection: %s", exc)
                self.websocket.abort()
        finally:
            self._writer = None

    def _send_now(self, frame: bytes) -> None:
        """Queue an already framed control or heartbeat frame behind pending messages."""
        outgoing = Outgoing(b"")
        outgoing._frame = frame
        # A control frame, not a message: taken off the outbox's count it is added to on flush.
        self.outbox.sent -= 1
        self.outbox.sent_bytes -= len(frame)
        if self.outbox.deliver(outgoing):
            self.outbox.flush()

    # -- timers (called by the process's Keepalive, which must never block) ---------------

    def tick(self, now: float) -> float:
        """Send a heartbeat or a ping when due; returns when to be called next."""
        if self._closing:
            return now + CLOSE_TIMEOUT
        if now >= self._next_beat:
            self._send_now(self._heartbeat_frame)
            self._next_beat = now + (self._beat or 0)
        if now >= self._next_check:
            self._next_check = self._check_alive(now)
        return min(self._next_check, self._next_beat)

    @property
    def _heartbeat_frame(self) -> bytes:
        return Outgoing(self._heartbeat or b"").frame

    def _check_alive(self, now: float) -> float:
        """Ping a client silent for ``ping_interval``; close one that leaves a ping unanswered
        for ``ping_timeout``. Returns when to check next."""
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        if self._ping_sent is not None and self._last_received < self._ping_sent:
            if now - self._ping_sent < timeout:
                return self._ping_sent + timeout
            logger.info("no answer to a ping for %.0fs: closing", now - self._ping_sent)
            gevent.spawn(self._ping_timed_out)
            return now + interval
        self._ping_sent = None
        self.outbox.forget_stale()
        if now - self._last_received >= interval:
            self._send_now(PING_FRAME)
            self._ping_sent = now
            return now + timeout
        return self._last_received + interval

    def _ping_timed_out(self) -> None:
        # The close frame is for a client that still reads but does not answer pings; a
        # dead peer never answers it, so the connection is dropped right away.
        self.close(CloseCode.INTERNAL_ERROR, "ping timeout")
        self.websocket.abort()


def announce_resync(hub: Hub) -> None:
    """Tell the websockets that track positions on ``hub``'s channels to resync.

    The middleware registers it with hubs.on_connection_lost when it is built."""
    # Messages published while the hub was disconnected are gone from pub/sub: websockets that
    # track positions on one of its channels are told to resync (their clients can recover from
    # history). On a cluster, ``hub`` is one shard's: the other shards' channels lost nothing.
    lost = hub.channels
    for relay in live_relays():
        outbox = relay.outbox
        if outbox.labels is not None and not lost.isdisjoint(relay.subscribed):
            outbox.deliver(Outgoing(RESYNC_ALL))
            outbox.flush()


def live_relays() -> list[Relay]:
    """The websockets open in this process (see lifecycle.py)."""
    return [relay for relay in lifecycle.live_relays() if isinstance(relay, Relay)]


close_all = lifecycle.close_all
