"""Redis Cluster failover: a master of a real cluster (three masters, three replicas) is killed;
its replica takes over, the hub moves the shard's channels to it, websockets stay open, and the
other shards' channels lose nothing meanwhile. The window's loss is measured."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from conftest import wait_for
from redis.exceptions import RedisClusterException
from redis_server import execute
from redis_topologies import (
    SLOTS,
    ClusterTopology,
    PublishingLoop,
    info,
    key_slot,
    require_redis7,
)

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

END = "end"


@pytest.fixture
def cluster_with_replicas() -> Iterator[ClusterTopology]:
    # Without full coverage required, the shards that keep their master keep serving while
    # another one fails over (docs/scaling.rst recommends it).
    args = ("--cluster-require-full-coverage", "no")
    topology = ClusterTopology(require_redis7(), masters=3, replicas=1, args=args)
    try:
        yield topology.start()
    finally:
        topology.stop()


def facility_on(shard: int, masters: int = 3) -> str:
    """A facility whose broadcast channel hashes into the slots of master number ``shard``."""
    low, high = SLOTS * shard // masters, SLOTS * (shard + 1) // masters
    return next(
        f"f{n}" for n in range(10000) if low <= key_slot(f"broadcast:f{n}".encode()) < high
    )


def publisher(cluster: ClusterTopology, facility: str) -> RedisPublisher:
    settings = Settings(connection=cluster.url(), expire=0)
    return RedisPublisher(facility=facility, broadcast=True, settings=settings)


def received_until_end(ws) -> list[str]:
    got = []
    while (message := ws.recv(timeout=15)) != END:
        got.append(message)
    return got


def test_master_failover_moves_the_shard_and_spares_the_others(
    start_server, cluster_with_replicas, publishing
):
    cluster = cluster_with_replicas
    failing, steady = facility_on(0), facility_on(1)
    victim = cluster.masters[0]
    server = start_server(connection=cluster.url())
    ws_failing = server.connect(f"/ws/{failing}?subscribe-broadcast", legacy=True)
    ws_steady = server.connect(f"/ws/{steady}?subscribe-broadcast", legacy=True)
    try:
        wanted = {f"broadcast:{failing}": 1, f"broadcast:{steady}": 1}
        wait_for(lambda: server.stats()["channels"] == wanted)
        loop = publishing(PublishingLoop(publisher(cluster, failing)))
        steady_loop = publishing(PublishingLoop(publisher(cluster, steady)))
        wait_for(lambda: loop.delivered_after(0) >= 20 and steady_loop.delivered_after(0) >= 20)

        loop.pause()
        killed_at = time.monotonic()
        victim.kill()
        loop.resume()
        replica = cluster.replicas[0]
        wait_for(lambda: info(replica, "replication")["role"] == "master", timeout=30)
        promoted_after = time.monotonic() - killed_at
        wait_for(lambda: loop.delivered_after(killed_at) >= 30, timeout=30)
        for each in (loop, steady_loop):
            each.stopped.set()
        for facility in (failing, steady):
            end = publisher(cluster, facility)
            wait_for(lambda p=end: p.publish_message(END) > 0)

        # The moved channel is subscribed on the promoted replica, by one connection.
        shard_channels = execute(replica, "PUBSUB", "SHARDCHANNELS")
        assert shard_channels == [f"broadcast:{failing}".encode()]
        assert len(execute(replica, "CLIENT", "LIST", "TYPE", "pubsub").splitlines()) == 1

        got = received_until_end(ws_failing)
        assert got == sorted(set(got), key=int)  # in order, nothing twice
        assert {str(a.number) for a in loop.attempts if a.receivers} <= set(got)
        # The other shard never noticed: every message of its channel arrived.
        steady_got = received_until_end(ws_steady)
        assert steady_got == [str(a.number) for a in steady_loop.attempts]
        assert all(a.receivers == 1 for a in steady_loop.attempts)
        assert all(
            isinstance(e, redis.RedisError | RedisClusterException) for e in loop.errors
        ), loop.errors

        after = [a for a in loop.attempts if a.at > killed_at]
        first = next(a for a in after if a.receivers)
        lost = [a for a in after if a.at < first.at and a.receivers == 0]
        refused = [a for a in after if a.at < first.at and a.receivers is None]
        print(
            f"\ncluster failover: replica promoted after {promoted_after:.2f}s, hub receiving "
            f"again after {first.at - killed_at:.2f}s; {len(refused)} publishes raised, "
            f"{len(lost)} published to nobody (lost); other shard: nothing lost"
        )
    finally:
        ws_failing.close()
        ws_steady.close()
