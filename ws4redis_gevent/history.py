"""Opt-in message history: recovery of what a client missed while it was away.

With WS4REDIS_HISTORY set for a facility, ``RedisPublisher`` appends each message to a Redis
stream beside its channel (``CHANNEL:@history``, capped and expiring) and publishes it wrapped in
an *envelope* that carries its stream ID, all in one Lua script, so that the order of the stream
and the order of the pub/sub channel are the same. An *epoch* (``CHANNEL:@epoch``), drawn at
random when a channel's history starts, tells a history that Redis lost and began again from
the one a client knew.

A position is ``EPOCH:ID``. A client that reconnects with the position of the last message it
saw on a channel receives the entries after it from the stream, then the live ones; live
messages that the stream already gave are skipped by ID, so the seam has no gap and no
duplicate. When the stream no longer reaches back that far, or the epoch changed, the client is
told to resync instead.

Envelopes travel only between ws4redis-gevent processes: websockets that did not ask for
recovery receive the bare payload, exactly as ws4redis sent it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis

ENVELOPE = b"\x00ws4r\x00"
HISTORY_SUFFIX = ":@history"
EPOCH_SUFFIX = ":@epoch"

# KEYS: stream, epoch, persisted message, persisted stamp
# ARGV: payload, channel, maxlen, ttl, new epoch, persist expire (0 = no), stamp
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then epoch = ARGV[5] end
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
    return channel + HISTORY_SUFFIX


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
        """Queue one publish with history on ``pipe`` (its reply: the receiver count)."""
        from .redis_store import STAMP_SUFFIX

        keys = [stream_key(channel), channel + EPOCH_SUFFIX, channel, channel + STAMP_SUFFIX]
        args: list[Any] = [payload, channel, config.size, config.ttl, new_epoch(), expire, stamp]
        pipe.eval(_PUBLISH_LUA, len(keys), *keys, *args)


def open_envelope(data: bytes) -> tuple[bytes, bytes | None]:
    """Split a pub/sub message into (payload, position); position is None without envelope."""
    if not data.startswith(ENVELOPE):
        return data, None
    parts = data.split(b"\x00", 4)
    if len(parts) != 5:
        return data, None
    _, _, epoch, entry_id, payload = parts
    return payload, epoch + b":" + entry_id


@dataclass
class Recovery:
    """What a reconnecting client missed on one channel."""

    entries: list[tuple[bytes, bytes]]  # (position, payload), oldest first
    resync: bool = False

    @property
    def last(self) -> bytes | None:
        return self.entries[-1][0] if self.entries else None


def recover(client: redis.Redis, channel: str, position: str) -> Recovery:
    """The entries of ``channel`` after ``position`` (``EPOCH:ID``), or a resync verdict."""
    epoch, _, since = position.partition(":")
    stream = stream_key(channel)
    with client.pipeline(transaction=True) as pipe:
        pipe.get(channel + EPOCH_SUFFIX)
        pipe.xrange(stream, since, since) if since else pipe.exists(stream)
        pipe.xrange(stream, "(" + since if since else "-", "+")
        try:
            current_epoch, anchor, entries = pipe.execute()
        except redis.ResponseError:  # a malformed ID from the client
            return Recovery([], resync=True)
    if current_epoch is None or current_epoch.decode() != epoch or not anchor:
        # The history was lost, started again, or trimmed past the client's position.
        return Recovery([], resync=True)
    prefix = current_epoch + b":"
    return Recovery([(prefix + entry_id, fields[b"d"]) for entry_id, fields in entries])


def latest(client: redis.Redis, channel: str) -> tuple[bytes, bytes] | None:
    """The newest entry of ``channel``'s history as (position, payload), or None."""
    with client.pipeline(transaction=True) as pipe:
        pipe.get(channel + EPOCH_SUFFIX)
        pipe.xrevrange(stream_key(channel), "+", "-", count=1)
        epoch, entries = pipe.execute()
    if epoch is None or not entries:
        return None
    entry_id, fields = entries[0]
    return epoch + b":" + entry_id, fields[b"d"]


def entry_id(position: bytes) -> tuple[int, int]:
    """The stream ID of a position, comparable: ``b"e:1700-3"`` gives ``(1700, 3)``."""
    _, _, raw = position.partition(b":")
    millis, _, seq = raw.partition(b"-")
    return int(millis), int(seq or 0)
