"""What publisher and subscriber share: the message type, SELF, channel choice and persistence.

A persisted message is stored under its channel's name, as ws4redis does, so ws4redis code reading
it keeps working. Beside it, a stamp key (keys.stamp_key) holds when it was stored (nanoseconds
since the epoch), so that ``fetch_message`` can return the newest one among several channels.
Payloads are published and stored in the form envelope.wrap gives them, which keeps their type.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import redis

from . import settings as settings_module
from . import stats
from .channels import Identity
from .connection import make_pool, parse_connection, shared_cluster
from .envelope import MalformedEnvelope, is_utf8, unwrap, wrap
from .history import HistoryPublisher, history_config
from .identity import identity_from_request
from .keys import AUDIENCES, STAMP_SUFFIX, audience_channels, loggable, stamp_key
from .settings import Settings

logger = logging.getLogger("ws4redis_gevent")


class RedisMessage(bytes):
    """A message as it travels through Redis: bytes, built from str, bytes or a pub/sub reply.

    ``binary`` says which frame carries it to websockets: True for binary, False for text, None
    (the default) to decide by content as ws4redis did: text when it is valid UTF-8, binary
    otherwise. ``RedisMessage("text")`` is text; ``RedisMessage(data, binary=True)`` is binary
    whatever its bytes.
    """

    binary: bool | None

    def __new__(cls, value: Any, binary: bool | None = None) -> RedisMessage:
        if isinstance(value, RedisMessage) and binary is None:
            binary = value.binary
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif isinstance(value, list | tuple):
            # ws4redis accepted a raw pub/sub reply: [b'message', channel, data].
            if len(value) < 3 or value[0] not in (b"message", "message"):
                raise ValueError(f"not a pub/sub message: {value!r}")
            return cls(value[2], binary)
        elif not isinstance(value, bytes | bytearray | memoryview):
            raise ValueError(f"a RedisMessage is made from str or bytes, not {type(value)!r}")
        message = super().__new__(cls, value)
        message.binary = binary
        return message


class _Self:
    """The magic item standing for the current user, their groups, or the current session."""

    _instance: _Self | None = None

    def __new__(cls) -> _Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SELF"

    def __reduce__(self) -> str:
        return "SELF"


SELF = _Self()

_pools: dict[tuple[int, str], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


def connection_pool(connection: dict[str, Any] | str) -> redis.ConnectionPool:
    """The process's connection pool for these connection settings (see connection.py).

    Pools are per process: a pool created before a fork is never reused in the child.
    On Sentinel, the pool connects to whichever server the sentinels name as master.

    Raises:
        ImproperlyConfigured: for a Redis Cluster, which has one pool per node.
    """
    if _substitute is not None:
        return _substitute(connection).connection_pool
    key = (os.getpid(), _connection_key(connection))
    pool = _pools.get(key)
    if pool is None:
        # Built outside the lock: building a pool yields to other greenlets (its queue's lock),
        # and the lock is a real one when this module was imported before monkey-patching (as
        # in gunicorn's master): a greenlet waiting for it would block the whole worker.
        made = make_pool(parse_connection(connection))
        with _pools_lock:
            pool = _pools.setdefault(key, made)
    return pool


_keys: dict[str, str] = {}


def _connection_key(connection: dict[str, Any] | str) -> str:
    # Every handshake asks for the hub by its connection settings: they are parsed once.
    text = repr(connection)
    key = _keys.get(text)
    if key is None:
        key = _keys.setdefault(text, parse_connection(connection).key)
    return key


def redis_client(connection: dict[str, Any] | str) -> redis.Redis:
    """A Redis client sharing the process's pool for ``connection``.

    On a Redis Cluster, the process's ``ShardedRedisCluster`` instead: it publishes with
    SPUBLISH and has the methods RedisStore uses (pipeline, set, mget).
    """
    if _substitute is not None:
        return _substitute(connection)
    if parse_connection(connection).cluster:
        return cast(redis.Redis, shared_cluster(connection))
    return redis.Redis(connection_pool=connection_pool(connection))


def stamp() -> bytes:
    return str(time.time_ns()).encode("ascii")


_clients: dict[tuple[int, str], redis.Redis] = {}

ClientFactory = Callable[[Any], redis.Redis]
_substitute: ClientFactory | None = None


def substitute_clients(factory: ClientFactory | None) -> ClientFactory | None:
    """Have ``factory(connection)`` make every Redis client of this process; None: real ones.

    The seam of the test tools (``ws4redis_gevent.testing.capture``): while a factory is set,
    publishers, subscribers, hubs and ``redis_client()`` get its client, whatever
    WS4REDIS_CONNECTION says, so that no test reaches a Redis it was not given.

    Returns:
        The factory that was set before (to restore it).
    """
    global _substitute
    previous, _substitute = _substitute, factory
    return previous


def _shared_client(connection: dict[str, Any] | str) -> redis.Redis:
    # Building a redis.Redis costs more than the rest of a websocket handshake; one per
    # process and connection settings is enough (it is safe to share between greenlets).
    if _substitute is not None:
        return _substitute(connection)
    key = (os.getpid(), repr(connection))
    client = _clients.get(key)
    if client is None:
        client = _clients.setdefault(key, redis_client(connection))
    return client


def forget_connection(connection: dict[str, Any] | str) -> None:
    """Close and forget this process's pool and client for ``connection`` (a server that is
    gone for good, such as a test's embedded Redis)."""
    pid = os.getpid()
    client = _clients.pop((pid, repr(connection)), None)
    pool = _pools.pop((pid, _connection_key(connection)), None)
    for each in (client.connection_pool if client is not None else None, pool):
        if each is not None:
            each.disconnect()


class RedisStore:
    """Base class of RedisPublisher and RedisSubscriber: the Redis connection and the channels."""

    def __init__(self, connection: redis.Redis | None = None, settings: Settings | None = None):
        self.settings = settings or settings_module.load()
        self._connection = connection or _shared_client(self.settings.connection)
        self._publishers: list[str] = []
        self._history: HistoryPublisher | None = None
        self.facility: str | None = None

    @property
    def publish_targets(self) -> list[str]:
        """The channels what this store publishes goes to (what the relay publishes on)."""
        return self._publishers

    def get_prefix(self) -> str:
        """The channel prefix with its colon, or an empty string (as ws4redis)."""
        return f"{self.settings.prefix}:" if self.settings.prefix else ""

    def _get_message_channels(
        self,
        request: Any = None,
        facility: str = "{facility}",
        broadcast: bool = False,
        groups: Iterable[Any] = (),
        users: Iterable[Any] = (),
        sessions: Iterable[Any] = (),
    ) -> list[str]:
        """The channels for these audiences; SELF items resolve against ``request``."""
        identity = identity_from_request(request) if request is not None else Identity()
        wanted = {
            "broadcast": [None] if broadcast else [],
            "group": groups,
            "user": users,
            "session": sessions,
        }
        channels: list[str] = []
        for audience in ("broadcast", "group", "user", "session"):
            names = _resolve_self(wanted[audience], audience, identity)
            if audience == "broadcast" and not names:
                continue
            channels.extend(audience_channels(self.settings.prefix, facility, audience, names))
        return list(dict.fromkeys(channels))

    def publish_message(
        self, message: Any, expire: int | None = None, binary: bool | None = None
    ) -> int:
        """Publish ``message`` on this store's channels; persist it if ``expire`` > 0.

        Args:
            message: a RedisMessage, str or bytes.
            expire: seconds to keep it as the channel's last message; defaults to
                WS4REDIS_EXPIRE; 0 publishes without persisting.
            binary: True sends it in a binary frame, False in a text frame (it must then be
                valid UTF-8); None keeps a RedisMessage's own ``binary``, makes a str text, and
                lets the content decide for bytes (text if valid UTF-8), as ws4redis did.

        Returns:
            How many subscribers Redis delivered it to (as seen by Redis).

        Raises:
            ValueError: ``binary=False`` for bytes that are not valid UTF-8.
            redis.ConnectionError: when Redis cannot be reached; nothing is lost silently.
        """
        if binary is None and isinstance(message, str):
            binary = False
        message = RedisMessage(message, binary)
        if message.binary is False and not is_utf8(message):
            raise ValueError("a text message must be valid UTF-8: publish it with binary=True")
        expire = self.settings.expire if expire is None else expire
        if not self._publishers:
            return 0
        data = wrap(message, message.binary)
        history = history_config(self.settings.history, self.facility)
        counted = []  # indexes of the replies that count receivers
        with self._connection.pipeline(transaction=False) as pipe:
            for channel in self._publishers:
                counted.append(len(pipe))
                if history is not None:
                    # One script: append to the stream, publish with the position, persist.
                    self._history_publisher.publish(
                        pipe, channel, data, history, max(expire, 0), stamp()
                    )
                    continue
                pipe.publish(channel, data)
                if expire > 0:
                    pipe.set(channel, data, ex=expire)
                    pipe.set(stamp_key(channel), stamp(), ex=expire)
            replies = pipe.execute()
        stats.STATS.publishes += len(counted)
        return sum(replies[i] for i in counted)

    @property
    def _history_publisher(self) -> HistoryPublisher:
        if self._history is None:
            self._history = HistoryPublisher(self._connection)
        return self._history

    def fetch_newest(self, channels: Sequence[str]) -> RedisMessage | None:
        """The newest persisted message among ``channels``, or None; ties go to the first."""
        newest = newest_stored(self._connection, channels)
        if newest is None:
            return None
        payload, binary = newest[1]
        return RedisMessage(payload, binary)


def read_stored(
    connection: redis.Redis, channels: Sequence[str]
) -> list[tuple[int, str, tuple[bytes, bool | None]]]:
    """The stored messages of ``channels`` as (stamp, channel, (payload, binary)), in order.

    A message stored without a stamp (by ws4redis) ranks oldest (-1). A stamp that is not a
    number, or a stored value that is a malformed envelope, is logged and skipped: what is in
    Redis never fails a handshake.
    """
    if not channels:
        return []
    keys = [key for channel in channels for key in (channel, stamp_key(channel))]
    values = connection.mget(keys)
    found = []
    for channel, message, when in zip(channels, values[::2], values[1::2], strict=True):
        if message is None:
            continue
        try:
            rank = int(when) if when else -1
            found.append((rank, channel, unwrap(cast(bytes, message))))
        except (ValueError, MalformedEnvelope) as exc:
            logger.warning("ignored the stored message of %r: %s", loggable(channel), exc)
    return found


def newest_stored(
    connection: redis.Redis, channels: Sequence[str]
) -> tuple[int, tuple[bytes, bool | None]] | None:
    """The newest stored message among ``channels`` as (stamp, (payload, binary)), or None."""
    best: tuple[int, tuple[bytes, bool | None]] | None = None
    for rank, _, message in read_stored(connection, channels):
        if best is None or rank > best[0]:
            best = (rank, message)
    return best


def _resolve_self(names: Iterable[Any], audience: str, identity: Identity) -> list[Any]:
    resolved: list[Any] = []
    for name in names:
        if name is SELF:
            resolved.extend(identity.names(audience))
        elif name is not None or audience == "broadcast":
            resolved.append(name)
    return resolved


__all__ = [
    "AUDIENCES",
    "STAMP_SUFFIX",
    "RedisMessage",
    "RedisStore",
    "SELF",
    "connection_pool",
    "redis_client",
]
