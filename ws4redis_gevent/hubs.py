"""The process's hubs: one per Redis connection setting (a ``Hub``, or a ``ClusterHub`` on a
cluster), built on first use, rebuilt after a fork, and the hooks told when one loses Redis."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, cast

from .connection import parse_connection
from .hub import Hub, HubInterface
from .redis_store import _connection_key, redis_client

# Called (in the hub's greenlet) with the hub, or cluster shard, whose connection was lost.
_connection_lost_hooks: list[Callable[[Hub], None]] = []

_hubs: dict[tuple[int, str, float], HubInterface] = {}
_hubs_lock = threading.Lock()


def on_connection_lost(hook: Callable[[Hub], None]) -> None:
    """Call ``hook(hub)`` whenever a hub of this process loses Redis (registered once)."""
    if hook not in _connection_lost_hooks:
        _connection_lost_hooks.append(hook)


def _connection_lost(hub: Hub) -> None:
    for hook in _connection_lost_hooks:
        hook(hub)


def get_hub(connection: dict[str, Any] | str, write_window: float = 0.0) -> HubInterface:
    """The hub of this process for these connection settings (a new one after a fork).

    On a Redis Cluster it is a ``ClusterHub`` (sharded pub/sub, one connection per shard).
    ``write_window``: seconds the hub gathers messages before writing them to the websockets
    (``WS4REDIS_WRITE_WINDOW``); hubs with different windows are different hubs.
    """
    key = (os.getpid(), _connection_key(connection), write_window)
    hub = _hubs.get(key)
    if hub is not None:
        return hub
    # Built outside the lock, which is a real one when this module was imported before
    # monkey-patching (gunicorn's master): building may yield to other greenlets (a pool's
    # queue, a cluster client learning the slot map), and one waiting for the lock would block
    # the whole worker. Two racing builds keep the first.
    made = _build(connection, write_window)
    with _hubs_lock:
        hub = _hubs.setdefault(key, made)
    if hub is not made:
        made.close()
    return hub


def _build(connection: dict[str, Any] | str, write_window: float) -> HubInterface:
    client = redis_client(connection)
    made: HubInterface
    if parse_connection(connection).cluster:
        from .cluster_hub import ClusterHub  # its redis.cluster imports only where needed

        made = ClusterHub(cast(Any, client), write_window=write_window)
    else:
        made = Hub(client, write_window=write_window)
    made.on_connection_lost(_connection_lost)
    return made


def hubs() -> list[HubInterface]:
    """The hubs of this process."""
    return [hub for (pid, *_), hub in list(_hubs.items()) if pid == os.getpid()]


def close_hubs() -> None:
    """Close every hub of this process (tests, worker shutdown)."""
    with _hubs_lock:
        for hub in _hubs.values():
            hub.close()
        _hubs.clear()
