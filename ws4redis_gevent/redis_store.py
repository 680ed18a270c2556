"""What publisher and subscriber share: the message type, SELF, channel choice and persistence.

A persisted message is stored under its channel's name, as ws4redis does, so ws4redis code reading
it keeps working. Beside it, ``CHANNEL:@published`` holds when it was stored (nanoseconds since
the epoch), so that ``fetch_message`` can return the newest one among several channels.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis

from . import settings as settings_module
from .channels import AUDIENCES, Identity, audience_channels
from .connection import make_pool, parse_connection, shared_cluster
from .history import HistoryPublisher, history_config
from .identity import identity_from_request
from .settings import Settings

STAMP_SUFFIX = ":@published"


class RedisMessage(bytes):
    """A message as it travels through Redis: bytes, built from str, bytes or a pub/sub reply."""

    def __new__(cls, value: Any) -> RedisMessage:
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif isinstance(value, list | tuple):
            # ws4redis accepted a raw pub/sub reply: [b'message', channel, data].
            if len(value) < 3 or value[0] not in (b"message", "message"):
                raise ValueError(f"not a pub/sub message: {value!r}")
            return cls(value[2])
        elif not isinstance(value, bytes | bytearray | memoryview):
            raise ValueError(f"a RedisMessage is made from str or bytes, not {type(value)!r}")
        return super().__new__(cls, value)


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
    if parse_connection(connection).cluster:
        return cast(redis.Redis, shared_cluster(connection))
    return redis.Redis(connection_pool=connection_pool(connection))


def stamp() -> bytes:
    return str(time.time_ns()).encode("ascii")


_clients: dict[tuple[int, str], redis.Redis] = {}


def _shared_client(connection: dict[str, Any] | str) -> redis.Redis:
    # Building a redis.Redis costs more than the rest of a websocket handshake; one per
    # process and connection settings is enough (it is safe to share between greenlets).
    key = (os.getpid(), repr(connection))
    client = _clients.get(key)
    if client is None:
        client = _clients.setdefault(key, redis_client(connection))
    return client


class RedisStore:
    """Base class of RedisPublisher and RedisSubscriber: the Redis connection and the channels."""

    def __init__(self, connection: redis.Redis | None = None, settings: Settings | None = None):
        self.settings = settings or settings_module.load()
        self._connection = connection or _shared_client(self.settings.connection)
        self._publishers: list[str] = []
        self._history: HistoryPublisher | None = None
        self.facility: str | None = None

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

    def publish_message(self, message: Any, expire: int | None = None) -> int:
        """Publish ``message`` on this store's channels; persist it if ``expire`` > 0.

        Args:
            message: a RedisMessage, str or bytes.
            expire: seconds to keep it as the channel's last message; defaults to
                WS4REDIS_EXPIRE; 0 publishes without persisting.

        Returns:
            How many subscribers Redis delivered it to (as seen by Redis).

        Raises:
            redis.ConnectionError: when Redis cannot be reached; nothing is lost silently.
        """
        message = RedisMessage(message)
        expire = self.settings.expire if expire is None else expire
        if not self._publishers:
            return 0
        history = history_config(self.settings.history, self.facility)
        counted = []  # indexes of the replies that count receivers
        with self._connection.pipeline(transaction=False) as pipe:
            for channel in self._publishers:
                counted.append(len(pipe))
                if history is not None:
                    # One script: append to the stream, publish with the position, persist.
                    self._history_publisher.publish(
                        pipe, channel, message, history, max(expire, 0), stamp()
                    )
                    continue
                pipe.publish(channel, message)
                if expire > 0:
                    pipe.set(channel, message, ex=expire)
                    pipe.set(channel + STAMP_SUFFIX, stamp(), ex=expire)
            replies = pipe.execute()
        return sum(replies[i] for i in counted)

    @property
    def _history_publisher(self) -> HistoryPublisher:
        if self._history is None:
            self._history = HistoryPublisher(self._connection)
        return self._history

    def fetch_newest(self, channels: Sequence[str]) -> RedisMessage | None:
        """The newest persisted message among ``channels``, or None; ties go to the first."""
        if not channels:
            return None
        keys = [key for channel in channels for key in (channel, channel + STAMP_SUFFIX)]
        values = self._connection.mget(keys)
        best: tuple[int, Any] | None = None
        for message, when in zip(values[::2], values[1::2], strict=True):
            if message is None:
                continue
            rank = int(when) if when else -1  # stored by ws4redis: oldest
            if best is None or rank > best[0]:
                best = (rank, message)
        return RedisMessage(best[1]) if best else None


def _resolve_self(names: Iterable[Any], audience: str, identity: Identity) -> list[Any]:
    resolved: list[Any] = []
    for name in names:
        if name is SELF:
            resolved.extend(identity.names(audience))
        elif name is not None or audience == "broadcast":
            resolved.append(name)
    return resolved


__all__ = ["AUDIENCES", "RedisMessage", "RedisStore", "SELF", "connection_pool", "redis_client"]
