"""WS4REDIS_CONNECTION parsed once into a ``ConnectionConfig``, and the Redis clients made from it.

Accepted forms (docs/settings.rst and docs/scaling.rst):

- one server: a dict of ``redis.Redis`` keyword arguments (``host``, ``port``, ``db``,
  ``password``, ``unix_socket_path``, ``ssl`` and ``ssl_*``...), or a ``redis://``,
  ``rediss://`` (TLS) or ``unix://`` URL, or a dict with a ``url`` and more keyword arguments;
- Sentinel: ``{"sentinels": [(host, port), ...], "service_name": "mymaster", ...}`` or
  ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel://`` for TLS to the master);
- Cluster: ``{"cluster": True, "startup_nodes": [(host, port), ...], ...}`` or
  ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``).

The hub and ``RedisPublisher`` build their clients from the same config. In cluster mode the
client publishes with SPUBLISH (sharded pub/sub, Redis 7+), routed to the shard owning the
channel's slot, and the hub subscribes with SSUBSCRIBE on that shard.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel, SentinelConnectionPool

from .exceptions import ImproperlyConfigured

Mode = Literal["single", "sentinel", "cluster"]
Address = tuple[str, int]

DEFAULT_MAX_CONNECTIONS = 50
SENTINEL_PORT = 26379
_BOOLEAN_OPTIONS = ("ssl", "ssl_check_hostname", "socket_keepalive", "retry_on_timeout")


@dataclass(frozen=True)
class ConnectionConfig:
    """Where Redis is and how to talk to it, whatever form WS4REDIS_CONNECTION took.

    Attributes:
        mode: ``single`` (one server), ``sentinel`` or ``cluster``.
        options: ``redis.Redis`` keyword arguments for the data connections (TLS, password,
            db, timeouts, ``unix_socket_path``...); host and port too in ``single`` mode.
        sentinels: the Sentinel addresses (``sentinel`` mode).
        service_name: the name the sentinels monitor the master under.
        sentinel_options: keyword arguments for the connections to the sentinels themselves.
        nodes: the startup nodes (``cluster`` mode).
    """

    mode: Mode
    options: dict[str, Any] = field(default_factory=dict)
    sentinels: tuple[Address, ...] = ()
    service_name: str | None = None
    sentinel_options: dict[str, Any] = field(default_factory=dict)
    nodes: tuple[Address, ...] = ()

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"

    @property
    def publish_command(self) -> str:
        """``SPUBLISH`` on a cluster (sharded pub/sub), else ``PUBLISH``."""
        return "SPUBLISH" if self.cluster else "PUBLISH"

    @property
    def key(self) -> str:
        """A stable text identifying these settings (pools and hubs are shared per key)."""
        return json.dumps(
            [self.mode, self.options, self.sentinels, self.service_name,
             self.sentinel_options, self.nodes],
            sort_keys=True, default=repr,
        )  # fmt: skip


def parse_connection(connection: ConnectionConfig | dict[str, Any] | str) -> ConnectionConfig:
    """Parse WS4REDIS_CONNECTION (see the module docstring for the accepted forms).

    Raises:
        ImproperlyConfigured: an unknown URL scheme, a Sentinel setting without service name,
            a cluster with a database other than 0...
    """
    if isinstance(connection, ConnectionConfig):
        return connection
    if isinstance(connection, str):
        return _parse_url(connection, {})
    if not isinstance(connection, dict):
        raise ImproperlyConfigured(
            f"WS4REDIS_CONNECTION must be a dict or a URL, not {type(connection).__name__}"
        )
    options = dict(connection)
    if "url" in options:
        url = str(options.pop("url"))
        scheme, sep, rest = url.partition("://")
        if options.pop("cluster", False) and sep and "+" not in scheme:
            url = f"{scheme}+cluster://{rest}"  # {"url": "redis://node:7000", "cluster": True}
        return _parse_url(url, options)
    if "sentinels" in options:
        sentinels = _addresses(options.pop("sentinels"), SENTINEL_PORT)
        return _sentinel_config(sentinels, options)
    if options.pop("cluster", False):
        nodes = options.pop("startup_nodes", None) or [
            (options.pop("host", "localhost"), options.pop("port", 6379))
        ]
        return _cluster_config(_addresses(nodes, 6379), options)
    return ConnectionConfig("single", options)


def _parse_url(url: str, extra: dict[str, Any]) -> ConnectionConfig:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ImproperlyConfigured(f"WS4REDIS_CONNECTION {url!r} is not a URL")
    base, _, topology = scheme.lower().partition("+")
    if base not in ("redis", "rediss", "unix") or topology not in ("", "sentinel", "cluster"):
        raise ImproperlyConfigured(
            f"unsupported scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    if not topology:
        return ConnectionConfig("single", {**_url_options(url), **extra})
    if base == "unix":
        raise ImproperlyConfigured(f"{scheme}:// is not supported: use redis+ or rediss+")
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if not netloc:
        raise ImproperlyConfigured(f"WS4REDIS_CONNECTION {url!r} names no host")
    path = [unquote(p) for p in parts.path.split("/") if p]
    # What is left once the host list is replaced by one host is an ordinary redis:// URL.
    credentials = parts.netloc.rpartition("@")[0]
    rest = "/".join(path[1:] if topology == "sentinel" else path)
    single = f"{base}://{credentials + '@' if credentials else ''}localhost/{rest}"
    if parts.query:
        single += f"?{parts.query}"
    options = _url_options(single)
    options.pop("host", None)
    options.pop("port", None)
    options.update(extra)
    default_port = SENTINEL_PORT if topology == "sentinel" else 6379
    addresses = _addresses(netloc.split(","), default_port)
    if topology == "sentinel":
        if not path:
            raise ImproperlyConfigured(f"{url!r}: the service name is missing (after the hosts)")
        options.setdefault("service_name", path[0])
        return _sentinel_config(addresses, options)
    return _cluster_config(addresses, options)


def _url_options(url: str) -> dict[str, Any]:
    """redis-py's URL parsing, as plain keyword arguments (``ssl``, ``unix_socket_path``)."""
    try:
        kwargs = parse_url(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"WS4REDIS_CONNECTION {url!r}: {exc}") from exc
    connection_class = kwargs.pop("connection_class", Connection)
    if issubclass(connection_class, UnixDomainSocketConnection):
        kwargs["unix_socket_path"] = kwargs.pop("path")
    elif issubclass(connection_class, SSLConnection):
        kwargs["ssl"] = True
    for name in _BOOLEAN_OPTIONS:
        if isinstance(kwargs.get(name), str):
            kwargs[name] = kwargs[name].lower() in ("1", "true", "yes", "on")
    return kwargs


def _addresses(items: Any, default_port: int) -> tuple[Address, ...]:
    """``[("h", 1), ["h", 2], "h:3", "h"]`` as ``(("h", 1), ("h", 2), ("h", 3), ("h", port))``."""
    result = []
    for item in items:
        try:
            if isinstance(item, str):
                bare = ":" not in item or item.endswith("]")  # "host" or "[::1]"
                host, _, port = (item, "", "") if bare else item.rpartition(":")
                item = (host.strip("[]"), int(port) if port else default_port)
            host, port = item
            result.append((str(host), int(port)))
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"WS4REDIS_CONNECTION: bad address {item!r}") from exc
    if not result:
        raise ImproperlyConfigured("WS4REDIS_CONNECTION lists no Sentinel or cluster node")
    return tuple(result)


def _sentinel_config(sentinels: tuple[Address, ...], options: dict[str, Any]) -> ConnectionConfig:
    service_name = options.pop("service_name", None)
    if not service_name:
        raise ImproperlyConfigured("a Sentinel WS4REDIS_CONNECTION needs a service_name")
    sentinel_options = options.pop("sentinel_kwargs", None) or {}
    return ConnectionConfig("sentinel", options, sentinels, service_name, sentinel_options)


def _cluster_config(nodes: tuple[Address, ...], options: dict[str, Any]) -> ConnectionConfig:
    if int(options.pop("db", 0)) != 0:
        raise ImproperlyConfigured("Redis Cluster has database 0 only")
    return ConnectionConfig("cluster", options, nodes=nodes)


# --- clients --------------------------------------------------------------------------------------


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's pool (it asks the sentinels where the master is at each connect), made to
    wait for a free connection, like the single-server pool, instead of failing."""


class ShardedClusterPipeline(ClusterPipeline):
    """A cluster pipeline whose ``publish`` is SPUBLISH (redis-py blocks PUBLISH in one)."""

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return self.spublish(channel, message)


class ShardedRedisCluster(RedisCluster):
    """A cluster client for ws4redis: ``publish`` is SPUBLISH, sent to the shard owning the
    channel's slot (as the hub's SSUBSCRIBE); ``mget`` reads keys of several slots."""

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return self.spublish(channel, message)

    def mget(self, keys: Any, *args: Any) -> Any:  # type: ignore[override]
        # Persisted messages and their stamps live in different slots; MGET would be CROSSSLOT.
        return self.mget_nonatomic(keys, *args)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        # Same object, one method more: redis-py builds the pipeline from a dozen internals.
        pipe.__class__ = ShardedClusterPipeline
        return pipe


def _connection_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """``redis.Redis`` keyword arguments as ``ConnectionPool`` keyword arguments."""
    kwargs = dict(options)
    kwargs.pop("max_connections", None)
    if "unix_socket_path" in kwargs:
        kwargs["path"] = kwargs.pop("unix_socket_path")
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        kwargs["connection_class"] = UnixDomainSocketConnection
    elif kwargs.pop("ssl", False):
        kwargs["connection_class"] = SSLConnection
    return kwargs


def make_pool(config: ConnectionConfig) -> redis.ConnectionPool:
    """A new connection pool: to the server, or to the master Sentinel names (not for a cluster).

    Raises:
        ImproperlyConfigured: for a cluster, which has one pool per node (use ``make_client``).
    """
    max_connections = int(config.options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    if config.mode == "single":
        kwargs = _connection_kwargs(config.options)
        return redis.BlockingConnectionPool(max_connections=max_connections, **kwargs)
    if config.mode == "sentinel":
        kwargs = dict(config.options)
        kwargs.pop("max_connections", None)
        # Without sentinel_kwargs, the sentinels get the socket_* options of the data connections.
        sentinel_kwargs = config.sentinel_options or {
            k: v for k, v in kwargs.items() if k.startswith("socket_")
        }
        sentinel = Sentinel(list(config.sentinels), sentinel_kwargs=sentinel_kwargs)
        return _BlockingSentinelPool(
            config.service_name, sentinel, max_connections=max_connections, **kwargs
        )
    raise ImproperlyConfigured("a Redis Cluster has no single connection pool: use redis_client()")


def make_client(config: ConnectionConfig) -> redis.Redis | ShardedRedisCluster:
    """A new client: ``redis.Redis`` on a new pool, or a ``ShardedRedisCluster``.

    Raises:
        redis.ConnectionError: no cluster node answered (a cluster client learns the slots first).
    """
    if not config.cluster:
        return redis.Redis(connection_pool=make_pool(config))
    nodes = [ClusterNode(host, port) for host, port in config.nodes]
    try:
        return ShardedRedisCluster(startup_nodes=nodes, **config.options)
    except RedisClusterException as exc:
        raise redis.ConnectionError(f"no Redis Cluster node answered: {exc}") from exc


# --- per process ----------------------------------------------------------------------------------

_clusters: dict[tuple[int, str], ShardedRedisCluster] = {}
_lock = threading.Lock()


def shared_cluster(connection: ConnectionConfig | dict[str, Any] | str) -> ShardedRedisCluster:
    """The process's cluster client for these settings (never one made before a fork)."""
    config = parse_connection(connection)
    if not config.cluster:
        raise ImproperlyConfigured("WS4REDIS_CONNECTION does not name a Redis Cluster")
    key = (os.getpid(), config.key)
    client = _clusters.get(key)
    if client is None:
        # Built outside the lock: it talks to the cluster, and the lock may be a real one (this
        # module imported before gevent's monkey-patching). Two racing builds keep the first.
        made = make_client(config)
        assert isinstance(made, ShardedRedisCluster)
        with _lock:
            client = _clusters.setdefault(key, made)
        if client is not made:
            made.close()
    return client
