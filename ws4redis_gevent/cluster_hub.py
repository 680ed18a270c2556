"""The hub for Redis Cluster: sharded pub/sub, one connection per shard, not per websocket.

A channel lives on the shard (master) that owns its hash slot: publishers SPUBLISH there and
the hub SSUBSCRIBEs there (Redis 7+). ``ClusterHub`` keeps one ``Hub`` per shard, each with a
single sharded pub/sub connection drained by its own greenlet, and routes each channel to the
shard of its slot. Each shard's ``Hub`` does what the single-server hub does (reference counts,
confirmations, bursts flushed once); only the Redis commands differ, which ``ShardedPubSub``
supplies under the plain names.

When a shard's connection is lost (a master failed over, or the slot moved), the cluster hub
refreshes the slot map and moves the channels to the shard that owns them now. What was
published in between is lost, as on a single server (docs/scaling.rst).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import redis
from redis.client import PubSub
from redis.cluster import RedisCluster
from redis.crc import key_slot

from .exceptions import ServiceUnavailable
from .hub import Hub, Sink
from .keys import loggable

logger = logging.getLogger("ws4redis_gevent.hub")

PING_TIMEOUT = 1.0
TOPOLOGY_POLL_MAX = 1.0  # longest pause between slot map refreshes while a shard is away


def _by_slot(channels: Iterable[bytes | str]) -> list[list[bytes | str]]:
    # One SSUBSCRIBE (or SUNSUBSCRIBE) may only name channels of one slot: CROSSSLOT otherwise.
    groups: dict[int, list[bytes | str]] = defaultdict(list)
    for channel in channels:
        name = channel if isinstance(channel, bytes) else channel.encode()
        groups[key_slot(name)].append(channel)
    return list(groups.values())


class ShardedPubSub(PubSub):
    """A PubSub on one cluster node that speaks sharded pub/sub under the plain names.

    ``subscribe`` sends SSUBSCRIBE (one per slot), ``unsubscribe`` SUNSUBSCRIBE, and messages
    come back typed ``message`` / ``subscribe`` / ``unsubscribe``, as ``Hub`` expects.
    ``on_evicted(channel)`` is called when the server drops a subscription by itself (its slot
    moved to another shard).
    """

    _KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}

    def __init__(
        self, connection_pool: redis.ConnectionPool, on_evicted: Callable[[bytes], None]
    ) -> None:
        self._on_evicted = on_evicted
        super().__init__(connection_pool)

    def subscribe(self, *channels: Any, **kwargs: Any) -> None:
        for group in _by_slot(channels):
            self.ssubscribe(*group)

    def unsubscribe(self, *channels: Any) -> None:
        for group in _by_slot(channels):
            self.sunsubscribe(*group)

    def _resubscribe_shard_channels(self) -> None:
        # After a reconnect: the same channels again, grouped by slot.
        self.subscribe(*self.shard_channels)

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        evicted = (
            isinstance(response, list | tuple)
            and response[0] in (b"sunsubscribe", "sunsubscribe")
            and response[1] not in self.pending_unsubscribe_shard_channels
        )
        message = super().handle_message(response, ignore_subscribe_messages)
        if evicted:
            self.shard_channels.pop(response[1], None)  # not ours any more: no resubscribing
            self._on_evicted(response[1])
        if message is not None:
            message["type"] = self._KINDS.get(message["type"], message["type"])
        return message


class _ShardClient:
    """What a ``Hub`` needs from its client: a pub/sub, here sharded, on one cluster node."""

    def __init__(self, pool: redis.ConnectionPool, on_evicted: Callable[[bytes], None]) -> None:
        self._pool = pool
        self._on_evicted = on_evicted

    def pubsub(self) -> ShardedPubSub:
        return ShardedPubSub(self._pool, self._on_evicted)


class ClusterHub:
    """The process's hub on a Redis Cluster; same interface as ``Hub``.

    Args:
        cluster: the cluster client (its slot map says which shard owns a channel).
        reconnect_backoff: first and longest delay between reconnection attempts of a shard,
            and between slot map refreshes while a shard is unreachable.
        write_window: each shard's write window (seconds; see ``Hub``).
    """

    def __init__(
        self,
        cluster: RedisCluster,
        reconnect_backoff: tuple[float, float] = (0.1, 1.0),
        write_window: float = 0.0,
    ) -> None:
        self._cluster = cluster
        self._backoff = reconnect_backoff
        self._write_window = write_window
        self._shards: dict[str, Hub] = {}  # node name ("host:port") -> that shard's hub
        self._pools: dict[str, redis.ConnectionPool] = {}
        self._placed: dict[bytes, str] = {}  # channel -> the shard it is subscribed on
        self._sinks: dict[bytes, set[Sink]] = {}
        self._connection_lost: list[Callable[[Hub], None]] = []
        self._suspects: set[str] = set()
        self._watcher: gevent.Greenlet | None = None
        self._retired_reconnects = 0
        self.moves = 0

    # -- the Hub interface -----------------------------------------------------------------

    def subscribe(self, channels: Iterable[bytes], sink: Sink, timeout: float | None = 5.0) -> None:
        """Route ``channels`` to ``sink``, subscribing each on its shard; returns once every
        shard confirmed.

        Raises:
            ServiceUnavailable: a shard could not be reached or did not confirm in time.
        """
        channels = list(channels)
        groups: dict[str, list[bytes]] = defaultdict(list)
        for channel in channels:
            groups[self._placed.get(channel) or self._owner(channel)].append(channel)
        done: list[bytes] = []
        try:
            with gevent.Timeout(timeout, ServiceUnavailable("Redis did not confirm in time")):
                for name, group in groups.items():
                    self._shard(name).subscribe(group, sink, timeout)
                    for channel in group:
                        self._placed[channel] = name
                        self._sinks.setdefault(channel, set()).add(sink)
                    done.extend(group)
        except ServiceUnavailable:
            self.unsubscribe(done, sink)
            raise

    def unsubscribe(self, channels: Iterable[bytes], sink: Sink, linger: bool = True) -> None:
        """Stop routing ``channels`` to ``sink``; shards release the channels nobody wants
        (after a linger, unless ``linger`` is False)."""
        groups: dict[str, list[bytes]] = defaultdict(list)
        for channel in channels:
            sinks = self._sinks.get(channel)
            if sinks is None or sink not in sinks:
                continue
            sinks.discard(sink)
            groups[self._placed[channel]].append(channel)
            if not sinks:
                del self._sinks[channel]
                del self._placed[channel]
        for name, group in groups.items():
            self._shards[name].unsubscribe(group, sink, linger)

    def subscribers(self, channel: bytes) -> int:
        """How many sinks receive ``channel`` in this process."""
        return len(self._sinks.get(channel, ()))

    @property
    def channels(self) -> set[bytes]:
        """The channels this process routes."""
        return set(self._sinks)

    @property
    def shards(self) -> dict[str, set[bytes]]:
        """The shards this hub holds a connection to, with the channels subscribed on each."""
        return {name: shard.channels for name, shard in self._shards.items()}

    @property
    def reconnects(self) -> int:
        """How often a shard connection was lost (shards closed since included)."""
        return self._retired_reconnects + sum(s.reconnects for s in self._shards.values())

    @property
    def connected(self) -> bool:
        """Whether every shard this hub uses is connected (and it uses one at least)."""
        return bool(self._shards) and all(s.connected for s in self._shards.values())

    def on_connection_lost(self, callback: Callable[[Hub], None]) -> None:
        """Call ``callback(shard)`` each time the connection to a shard is lost."""
        self._connection_lost.append(callback)
        for shard in self._shards.values():
            shard.on_connection_lost(callback)

    def close(self) -> None:
        """Stop reading and release every shard connection."""
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher = None
        for name in list(self._shards):
            self._retire(name)
        self._placed.clear()
        self._sinks.clear()

    # -- shards ----------------------------------------------------------------------------

    def _owner(self, channel: bytes) -> str:
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(channel))
        except Exception as exc:  # SlotNotCoveredError, or an empty slot map
            self._suspect("")
            raise ServiceUnavailable(f"no shard serves channel {channel!r}: {exc}") from exc
        return node.name

    def _shard(self, name: str) -> Hub:
        shard = self._shards.get(name)
        if shard is None:
            node = self._cluster.get_node(node_name=name)
            if node is None:
                raise ServiceUnavailable(f"shard {name} left the cluster")
            # A pool of the hub's own: at each slot map refresh, the cluster client marks the
            # connections of its node pools for reconnection, which would drop the shard's
            # subscriptions (and what is published until they are back) on every shard.
            source = self._cluster.get_redis_connection(node).connection_pool
            pool = self._pools[name] = redis.ConnectionPool(
                connection_class=source.connection_class, **source.connection_kwargs
            )
            client = _ShardClient(pool, self._evicted)
            shard = Hub(client, self._backoff, self._write_window)  # type: ignore[arg-type]
            for callback in self._connection_lost:
                shard.on_connection_lost(callback)
            shard.on_connection_lost(lambda _: self._suspect(name))
            self._shards[name] = shard
        return shard

    def _evicted(self, channel: bytes) -> None:
        logger.info("shard dropped channel %r (its slot moved): following it", loggable(channel))
        self._suspect("")

    def _suspect(self, name: str) -> None:
        # Called in a shard's reader greenlet: the work happens in the watcher's.
        self._suspects.add(name)
        if self._watcher is None or self._watcher.dead:
            self._watcher = gevent.spawn(self._follow_topology)

    def _follow_topology(self) -> None:
        """Refresh the slot map and move channels to their owners until every suspect shard
        answers again or holds no channel any more."""
        delay = self._backoff[0]
        while self._suspects:
            gevent.sleep(delay)
            delay = min(delay * 2, self._backoff[1], TOPOLOGY_POLL_MAX)
            try:
                self._cluster.nodes_manager.initialize()
            except Exception as exc:
                logger.warning("cannot refresh the cluster's slot map (%s)", exc)
                continue
            self._relocate()
            for name in list(self._suspects):
                if name not in self._shards or self._answers(name):
                    self._suspects.discard(name)

    def _answers(self, name: str) -> bool:
        node = self._cluster.get_node(node_name=name)
        if node is None:
            return False
        try:
            with gevent.Timeout(PING_TIMEOUT):
                return bool(self._cluster.get_redis_connection(node).ping())
        except (gevent.Timeout, redis.RedisError, OSError):
            return False

    def _relocate(self) -> None:
        """Move every channel whose slot another shard owns now; close emptied shards."""
        for channel, name in list(self._placed.items()):
            try:
                owner = self._owner(channel)
            except ServiceUnavailable:
                continue
            if owner == name or channel not in self._sinks:
                continue
            sinks = list(self._sinks[channel])
            try:
                new = self._shard(owner)
                for sink in sinks:
                    new.subscribe([channel], sink)
            except ServiceUnavailable as exc:
                logger.warning("cannot move %r to shard %s yet (%s)", loggable(channel), owner, exc)
                continue
            # Subscribing yielded: websockets may have left meanwhile (from the old shard).
            staying = self._sinks.get(channel, set())
            old = self._shards[name]
            for sink in sinks:
                old.unsubscribe([channel], sink)
                if sink not in staying:
                    new.unsubscribe([channel], sink)
            if staying:
                self._placed[channel] = owner
            self.moves += 1
            logger.info("channel %r moved from shard %s to %s", loggable(channel), name, owner)
        for name, shard in list(self._shards.items()):
            if not shard.channels:
                self._retire(name)

    def _retire(self, name: str) -> None:
        shard = self._shards.pop(name)
        self._retired_reconnects += shard.reconnects
        shard.close()
        self._pools.pop(name).disconnect()
