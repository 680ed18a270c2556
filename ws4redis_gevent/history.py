"""Opt-in message history: recovery of what a client missed while it was away.

With WS4REDIS_HISTORY set for a facility, ``RedisPublisher`` appends each message to a Redis
stream beside its channel (keys.history_key, capped and expiring) and publishes it wrapped in
an *envelope* (envelope.py) that carries its stream ID, all in one Lua script, so that the order
of the stream and the order of the pub/sub channel are the same. An *epoch* (keys.epoch_key),
drawn at random when a channel's history starts, tells a history that Redis lost and began
again from the one a client knew.

A position is ``EPOCH:ID``. A client that reconnects with the position of the last message it
saw on a channel receives the entries after it from the stream, then the live ones; live
messages that the stream already gave are skipped by ID, so the seam has no gap and no
duplicate. When the stream no longer reaches back that far, or the epoch changed, the client is
told to resync instead.

Envelopes travel only between ws4redis-gevent processes: websockets that did not ask for
recovery receive the bare payload, exactly as ws4redis sent it.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, cast

import redis

from .envelope import HISTORY as ENVELOPE
from .envelope import MalformedEnvelope, is_history, open_history, unwrap
from .keys import EPOCH_SUFFIX, HISTORY_SUFFIX, epoch_key, history_key, loggable, stamp_key

logger = logging.getLogger("ws4redis_gevent.history")

_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?\Z")

# KEYS: stream, epoch, persisted message, persisted stamp
# ARGV: payload, channel, maxlen, ttl, new epoch, persist expire (0 = no), stamp
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[2])
-- Only an epoch this script drew (hex digits) goes into envelopes: anything else is replaced.
if not epoch or #epoch > 16 or not string.match(epoch, '^%x+$') then epoch = ARGV[5] end
redis.call('SET', KEYS[2], epoch, 'EX', ARGV[4])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local envelope = '\\0ws4r\\0' .. epoch .. '\\0' .. id .. '\\0' .. ARGV[1]
local receivers = redis.call('PUBLISH', ARGV[2], envelope)
if tonumber(ARGV[6]) > 0 then
    redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[6])
    redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[6])
end
return receivers
"""


@dataclass(frozen=True)
class HistoryConfig:
    """How much history a facility keeps: ``size`` entries at most, for ``ttl`` seconds."""

    size: int
    ttl: int


def history_config(setting: Any, facility: str | None) -> HistoryConfig | None:
    """The history of ``facility`` from WS4REDIS_HISTORY, or None when it keeps none.

    The setting maps facility names (or ``"*"`` for every facility) to
    ``{"size": entries, "ttl": seconds}``.
    """
    if not setting or facility is None:
        return None
    entry = setting.get(facility, setting.get("*"))
    if not entry:
        return None
    size, ttl = int(entry.get("size", 100)), int(entry.get("ttl", 3600))
    return HistoryConfig(size, ttl) if size > 0 and ttl > 0 else None


def stream_key(channel: str) -> str:
    return history_key(channel)


def new_epoch() -> str:
    return secrets.token_hex(4)


class HistoryPublisher:
    """Publishes with history, one Lua script per message.

    The script goes as EVAL with its text rather than EVALSHA: a pipeline of EVALSHA costs an
    extra round trip (redis-py checks SCRIPT EXISTS first), and after a Redis restart a NOSCRIPT
    error in the middle of a pipeline could not be retried without publishing twice.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish(
        self,
        pipe: Any,
        channel: str,
        payload: bytes,
        config: HistoryConfig,
        expire: int,
        stamp: bytes,
    ) -> None:
        """Queue one publish with history on ``pipe`` (its reply: the receiver count).

        ``payload`` is in the form envelope.wrap gives it (typed where needed)."""
        keys = [history_key(channel), epoch_key(channel), channel, stamp_key(channel)]
        args: list[Any] = [payload, channel, config.size, config.ttl, new_epoch(), expire, stamp]
        pipe.eval(_PUBLISH_LUA, len(keys), *keys, *args)


def open_envelope(data: bytes) -> tuple[bytes, bytes | None]:
    """Split a pub/sub message into (payload, position); position is None without envelope.

    The payload is returned as published (typed where needed: see envelope.unwrap).

    Raises:
        MalformedEnvelope: a history envelope whose epoch or ID is not ours.
    """
    if not is_history(data):
        return data, None
    return open_history(data)


@dataclass
class Recovery:
    """What a reconnecting client missed on one channel."""

    entries: list[tuple[bytes, bytes, bool | None]]  # (position, payload, binary), oldest first
    resync: bool = False

    @property
    def last(self) -> bytes | None:
        return self.entries[-1][0] if self.entries else None


RECOVERY_PAGE = 32  # entries read per round trip while recovering


def recover(
    client: redis.Redis,
    channel: str,
    position: str,
    limit: int | None = None,
    max_bytes: int | None = None,
) -> Recovery:
    """The entries of ``channel`` after ``position`` (``EPOCH:ID``), or a resync verdict.

    More than ``limit`` entries, or more than ``max_bytes`` of payload, are a resync too: a
    handshake never reads or queues more than a websocket may have pending (the client reloads
    the channel's state instead). The stream is read in pages, so what a handshake holds while
    it reads stays within that bound plus one page."""
    epoch, _, since = position.partition(":")
    if not _STREAM_ID.match(since):
        return Recovery([], resync=True)  # not a position this library gave out
    stream = history_key(channel)
    with client.pipeline(transaction=True) as pipe:
        pipe.get(epoch_key(channel))
        pipe.xrange(stream, since, since)
        pipe.xrange(stream, "(" + since, "+", count=RECOVERY_PAGE)
        try:
            current_epoch, anchor, page = pipe.execute()
        except redis.ResponseError:  # a malformed ID from the client, or a key of another type
            return Recovery([], resync=True)
    if current_epoch is None or current_epoch != epoch.encode() or not anchor:
        # The history was lost, started again, or trimmed past the client's position.
        return Recovery([], resync=True)
    try:
        entries = _read_pages(client, stream, page, limit, max_bytes)
        if entries is None:
            return Recovery([], resync=True)  # more than the websocket may have pending
        return Recovery(_entries(current_epoch, entries))
    except (KeyError, MalformedEnvelope, redis.ResponseError) as exc:
        logger.warning("history of %r unreadable (%s): resync", loggable(channel), exc)
        return Recovery([], resync=True)


def _read_pages(
    client: redis.Redis, stream: str, page: list[Any], limit: int | None, max_bytes: int | None
) -> list[Any] | None:
    # The entries from ``page`` on, page by page; None once they exceed a bound.
    entries: list[Any] = []
    size = 0
    while True:
        entries.extend(page)
        size += sum(len(fields[b"d"]) for _, fields in page)
        if (limit is not None and len(entries) > limit) or (
            max_bytes is not None and size > max_bytes
        ):
            return None
        if len(page) < RECOVERY_PAGE:
            return entries
        last = page[-1][0]
        page = cast(list[Any], client.xrange(stream, "(" + last.decode(), "+", count=RECOVERY_PAGE))


def _entries(epoch: bytes, entries: list[Any]) -> list[tuple[bytes, bytes, bool | None]]:
    prefix = epoch + b":"
    return [(prefix + entry_id, *unwrap(fields[b"d"])) for entry_id, fields in entries]


def latest(client: redis.Redis, channel: str) -> tuple[bytes, bytes, bool | None] | None:
    """The newest entry of ``channel``'s history as (position, payload, binary), or None.

    What cannot be read (a key of another type, an entry without payload) counts as none."""
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.get(epoch_key(channel))
            pipe.xrevrange(history_key(channel), "+", "-", count=1)
            epoch, entries = pipe.execute()
        if epoch is None or not entries:
            return None
        return _entries(epoch, entries[:1])[0]
    except (redis.ResponseError, KeyError, MalformedEnvelope) as exc:
        logger.warning("history of %r unreadable (%s)", loggable(channel), exc)
        return None


def entry_id(position: bytes) -> tuple[int, int]:
    """The stream ID of a position, comparable: ``b"e:1700-3"`` gives ``(1700, 3)``.

    Raises:
        ValueError: not a stream ID (a client's ``since`` is checked with it first).
    """
    _, _, raw = position.partition(b":")
    millis, _, seq = raw.partition(b"-")
    return int(millis), int(seq or 0)


__all__ = [
    "ENVELOPE",
    "EPOCH_SUFFIX",
    "HISTORY_SUFFIX",
    "HistoryConfig",
    "HistoryPublisher",
    "Recovery",
    "entry_id",
    "history_config",
    "latest",
    "new_epoch",
    "open_envelope",
    "recover",
]
