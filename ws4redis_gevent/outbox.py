"""The outbox of one websocket: messages queued for it, bounded, with echo suppression and the
recovery seam; the hub delivers into it and flushes it in one system call per burst.

See ``relay.py`` for the websocket's other half (reading, closing, rate limits).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from . import stats
from .exceptions import ConnectionClosed
from .history import entry_id
from .outgoing import Outgoing
from .settings import DEFAULT_MAX_PENDING_BYTES
from .transport import NonBlockingWrites, WebSocket

logger = logging.getLogger("ws4redis_gevent.relay")

# How long an own message is remembered to swallow its echo (see Outbox.expect_echo).
ECHO_MEMORY = 30.0

# What a frame adds to its payload at most (header, and a recovery tag's label and position
# are counted with the payload they are prefixed to only roughly: a bound, not a measure).
FRAME_OVERHEAD = 14

RESYNC = b"!resync "
RESYNC_ALL = RESYNC + b"*"


class Outbox:
    """Messages waiting to be sent to one websocket; the hub delivers into it.

    The fast path: the hub appends to every subscribed outbox while it drains Redis, then
    calls ``flush`` on each outbox that received something, still in the hub's greenlet. A flush
    joins the pending frames and writes them with one non-blocking system call. Only when the
    socket cannot take everything does a writer greenlet start (``on_backlog``) to finish the
    job with blocking writes; until it is done later messages queue behind, and it ends when
    nothing is left.

    Without ``&echo``, a websocket does not receive the messages it published itself. The
    outbox knows which ones those are because the relay tells it (``expect_echo``) before
    publishing: the next arrival of that payload on that channel is the echo and is skipped.
    Deciding by sender, not by content alone, lets an identical message published by someone
    else through.
    """

    __slots__ = (
        "_items",
        "_expected",
        "_leftover",
        "_writing",
        "_send_nowait",
        "_bytes",
        "_unsent",
        "limit",
        "max_bytes",
        "overflowed",
        "overflow_cause",
        "on_overflow",
        "on_backlog",
        "labels",
        "resync",
        "_skip",
        "sent",
        "sent_bytes",
        "window_bits",
        "__weakref__",
    )

    def __init__(self, limit: int = 1000, max_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.limit = limit
        # Messages and bytes handed to the socket, counted per flush (see stats.py).
        self.sent = 0
        self.sent_bytes = 0
        self.max_bytes = max_bytes
        self.overflowed = False
        self.overflow_cause = ""
        # Bytes queued (payloads plus FRAME_OVERHEAD each), and bytes already framed and handed
        # to the socket that it has not taken yet (a partial flush's rest, the writer's chunk).
        self._bytes = 0
        self._unsent = 0
        self.on_overflow: Callable[[], Any] | None = None
        # Called when a flush cannot send everything: start a writer greenlet.
        self.on_backlog: Callable[[], Any] | None = None
        self._items: list[Outgoing] = []  # a list: an empty deque costs 600 bytes
        self._expected: dict[tuple[bytes, bytes], deque[float]] = {}
        self._leftover = b""
        self._writing = False
        self._send_nowait: Callable[[bytes], int] | None = None
        # Set for websockets that asked for recovery: channel -> label of tagged frames.
        self.labels: dict[bytes, bytes] | None = None
        # Live messages were dropped during the handshake: the client gets "!resync *" first.
        self.resync = False
        # Recovery's seam: per channel, the newest history entry already queued.
        self._skip: dict[bytes, tuple[int, int]] = {}
        # Set when the websocket negotiated permessage-deflate: the window its frames are
        # compressed with (each message once, for all websockets of that window).
        self.window_bits: int | None = None

    def attach(self, websocket: WebSocket) -> None:
        """Let ``flush`` write to ``websocket`` directly, if its backend can."""
        self._send_nowait = (
            websocket.send_nowait if isinstance(websocket, NonBlockingWrites) else None
        )

    def detach(self) -> None:
        """The websocket has ended: what the hub delivers until it lets go is dropped."""
        self._send_nowait = None
        self.on_backlog = None
        self.on_overflow = None
        self.overflowed = True  # takes nothing more
        self.clear()

    def deliver(self, message: Outgoing) -> bool:
        """Queue ``message``; True when the outbox was empty (the hub then flushes it)."""
        if self.overflowed:
            return False
        if self._expected and self._is_own_echo(message):
            return False
        if self._skip and self._already_queued(message):
            return False
        items = self._items
        size = len(message.payload) + FRAME_OVERHEAD
        # The bounds catch clients that do not read: messages wait only while a previous
        # write is unfinished (``_writing``), or while the handshake is under way (no relay
        # yet: ``on_backlog`` unset); otherwise the next flush sends them.
        if (self._writing or self.on_backlog is None) and self._full(len(items), size):
            if self.on_backlog is not None or self.labels is None:
                self._overflow()
                return False
            # The handshake of a websocket that tracks positions: what queued up is mostly
            # what its recovery, read from the history right after subscribing, sends anyway.
            # Dropped; the client is told to resync (see put_first), not closed.
            stats.STATS.dropped[stats.RESYNC] += len(items)
            items.clear()
            self._bytes = 0
            self.resync = True
        items.append(message)
        self._bytes += size
        if self._bytes > self.max_bytes and not self._writing and self.on_backlog is not None:
            # A burst bigger than the bound, within one batch of the hub: written now rather
            # than joined whole at the batch's end (a copy per socket). If the socket cannot
            # take it, a writer starts, and the bound applies from here on.
            self.flush()
            return False
        return len(items) == 1

    def resync_channel(self, channel: bytes) -> bool:
        """A message of ``channel`` was lost: a websocket that tracks positions is told to
        resync that channel (``!resync LABEL``); others have nothing to recover."""
        labels = self.labels
        if labels is None or channel not in labels:
            return False
        return self.deliver(Outgoing(RESYNC + labels[channel]))

    def _full(self, count: int, size: int) -> bool:
        """Whether a message of ``size`` bytes would pass a bound; says which in
        ``overflow_cause``."""
        if count >= self.limit:
            self.overflow_cause = f"{self.limit} messages pending"
            return True
        pending = self._bytes + self._unsent
        # A message alone is always taken, however big: the bound is on a backlog.
        if pending and pending + size > self.max_bytes:
            self.overflow_cause = f"{pending + size} bytes pending, over {self.max_bytes}"
            return True
        return False

    @property
    def pending_bytes(self) -> int:
        """What waits for this websocket, in bytes: queued, and handed to the socket unsent."""
        return self._bytes + self._unsent

    def _overflow(self) -> None:
        # A client that does not read: its backlog is dropped and it is closed. Only this
        # websocket is affected; the hub never waits for it.
        if not self.overflowed:
            self.overflowed = True
            stats.STATS.dropped[stats.SLOW_CONSUMER] += len(self._items) + 1
            self._items.clear()
            self._bytes = 0
            if self.on_overflow is not None:
                self.on_overflow()

    def flush(self) -> None:
        """Send what is queued now if the socket takes it; else leave it to a writer."""
        items = self._items
        if not items or self._writing:
            return  # a running writer sends what was queued meanwhile
        if self._send_nowait is None or self.on_backlog is None:
            self._start_writer()
            return
        data = self.encode(items)
        self.sent += len(items)
        self.sent_bytes += len(data)
        items.clear()
        self._bytes = 0
        try:
            sent = self._send_nowait(data)
        except ConnectionClosed:
            sent = 0  # the writer meets the error too, and ends the websocket
        if sent < len(data):
            # Nothing went out: it waits here. Part of it: the websocket keeps the rest.
            if sent == 0:
                self._leftover = data
            self._unsent = len(data) - sent
            self._start_writer()

    def _start_writer(self) -> None:
        # Until the relay runs (on_backlog set), messages wait; its first flush sends them.
        if self.on_backlog is not None:
            self._writing = True
            self.on_backlog()

    def encode(self, items: Sequence[Outgoing]) -> bytes:
        """The frames of ``items``, tagged with label and position in recovery mode."""
        labels = self.labels
        bits = self.window_bits
        if bits is not None and labels is None:
            if len(items) == 1:
                return items[0].deflated_frame(bits)
            return b"".join([m.deflated_frame(bits) for m in items])
        if labels is None:
            return items[0].frame if len(items) == 1 else b"".join([m.frame for m in items])
        return b"".join(
            [
                m.frame if m.channel is None else m.tagged_frame(labels.get(m.channel, b"-"))
                for m in items
            ]
        )

    def put_first(
        self, messages: Sequence[Outgoing], skip: dict[bytes, tuple[int, int]] | None = None
    ) -> None:
        """Queue ``messages`` (persisted or recovered) ahead of anything delivered so far.

        ``skip`` gives, per channel, the newest history entry among ``messages``: live
        messages up to it, queued already or arriving later, are duplicates and dropped.
        """
        if skip:
            self._skip = dict(skip)
            self._items[:] = [m for m in self._items if not self._already_queued(m)]
        self._items[:0] = messages
        self._bytes = sum(len(m.payload) + FRAME_OVERHEAD for m in self._items)

    def _already_queued(self, message: Outgoing) -> bool:
        if message.position is None or message.channel is None:
            return False
        until = self._skip.get(message.channel)
        if until is None:
            return False
        if entry_id(message.position) <= until:
            return True
        del self._skip[message.channel]  # positions only grow from here
        return False

    def expect_echo(self, channel: bytes, payload: bytes) -> None:
        self._expected.setdefault((channel, payload), deque()).append(time.monotonic())

    def _is_own_echo(self, message: Outgoing) -> bool:
        key = (message.channel or b"", message.payload)
        stamps = self._expected.get(key)
        if stamps is None:
            return False
        stamps.popleft()
        if not stamps:
            del self._expected[key]
        return True

    def forget_stale(self) -> None:
        """Drop expected echoes that never came back (e.g. lost while Redis restarted)."""
        limit = time.monotonic() - ECHO_MEMORY
        for key in [k for k, v in self._expected.items() if v[0] < limit]:
            stamps = self._expected[key]
            while stamps and stamps[0] < limit:
                stamps.popleft()
            if not stamps:
                del self._expected[key]

    def take(self) -> bytes:
        """For the writer: the unsent end of a partial flush, then the queued messages, framed.

        Empty when nothing is left: the writer ends, and flushes write directly again."""
        data = self._leftover
        self._leftover = b""
        if self._items:
            encoded = self.encode(self._items)
            self.sent += len(self._items)
            self.sent_bytes += len(encoded)
            data += encoded
            self._items.clear()
            self._bytes = 0
        self._unsent = len(data)  # what the writer holds until its next take
        if not data:
            self._writing = False
        return data

    def clear(self) -> None:
        """Drop everything queued (the websocket is closing)."""
        self._items.clear()
        self._leftover = b""
        self._writing = False
        self._bytes = self._unsent = 0

    def __len__(self) -> int:
        return len(self._items)
