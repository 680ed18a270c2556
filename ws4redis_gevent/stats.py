"""What this process has done, counted in plain integers (no dependency, always on).

The fan-out path counts per flush, not per message, on the outbox itself (``Outbox.sent``,
``Outbox.sent_bytes``); totals of ended websockets are added here when they end, so the figures
of the process are this module's counters plus the live outboxes' (see ``totals``). Everything
else (handshakes, closes, drops, publishes) happens once per websocket or per client message
and is counted here directly.

``ws4redis_gevent.metrics`` exports these figures to Prometheus when WS4REDIS_METRICS is on; it
is the only module that imports ``prometheus_client``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# Reasons a message is dropped (label values of the dropped-messages metric).
SLOW_CONSUMER = "slow_consumer"  # a websocket that does not read: its backlog
RATE_LIMIT = "rate_limit"  # a client publishing faster than WS4REDIS_PUBLISH_RATE
SIZE = "size"  # a client message larger than WS4REDIS_MAX_MESSAGE_SIZE
RESYNC = "resync"  # live messages replaced by a resync notice during a recovering handshake
MALFORMED = "malformed"  # a message from Redis whose envelope did not parse (see envelope.py)
DROP_REASONS = (SLOW_CONSUMER, RATE_LIMIT, SIZE, RESYNC, MALFORMED)


@dataclass
class Stats:
    """The counters of this process. Plain attributes: incrementing one costs nanoseconds."""

    handshakes: Counter[int] = field(default_factory=Counter)  # by HTTP status (101 = upgraded)
    open_by_backend: Counter[str] = field(default_factory=Counter)
    sent: int = 0  # messages written to websockets, by ended websockets (live: their outbox)
    sent_bytes: int = 0
    received: int = 0  # messages received from clients
    received_bytes: int = 0
    publishes: int = 0  # messages published to Redis by this process
    dropped: Counter[str] = field(default_factory=Counter)
    closes_sent: Counter[int] = field(default_factory=Counter)
    closes_received: Counter[int] = field(default_factory=Counter)
    reconnects: int = 0
    disconnected_seconds: float = 0.0  # completed outages only; see ``disconnected_for``
    lost_at: float | None = None  # monotonic time the hub lost Redis, while it is away

    def disconnected_for(self, now: float | None = None) -> float:
        """Seconds without a Redis connection so far, the current outage included."""
        if self.lost_at is None:
            return self.disconnected_seconds
        return self.disconnected_seconds + (now or time.monotonic()) - self.lost_at


STATS = Stats()


def connection_lost() -> None:
    """The hub lost Redis (called once per loss, in the hub's greenlet)."""
    STATS.reconnects += 1
    if STATS.lost_at is None:
        STATS.lost_at = time.monotonic()


def connection_restored() -> None:
    """Redis confirmed the hub's subscriptions again after a loss."""
    if STATS.lost_at is not None:
        STATS.disconnected_seconds += time.monotonic() - STATS.lost_at
        STATS.lost_at = None


def no_lag(seconds: float) -> None:
    pass


#: Called by the hub once per burst with the time from the burst's first message arriving from
#: Redis to the hub's last socket write for it. Replaced by ``metrics`` when it is on.
observe_hub_lag: Callable[[float], None] = no_lag


def hub_lag(seconds: float) -> None:
    """Report one burst's hub lag (see ``observe_hub_lag``)."""
    observe_hub_lag(seconds)


def reset() -> None:
    """Forget every figure (tests)."""
    fresh = Stats()
    for name in fresh.__dataclass_fields__:
        setattr(STATS, name, getattr(fresh, name))
