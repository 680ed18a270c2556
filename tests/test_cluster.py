"""Redis Cluster with sharded pub/sub: channels spread over three real masters, the hub holds
one connection per shard (not per websocket), publishing is SPUBLISH routed by slot, and
persisted messages work across slots."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ServerProcess, wait_for
from redis_server import execute
from redis_topologies import ClusterNode, ClusterTopology, info, key_slot
from websockets.sync.client import ClientConnection

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

FACILITIES = [f"room{n}" for n in range(12)]
PER_FACILITY = 2


@pytest.fixture
def cluster(redis_cluster: ClusterTopology) -> ClusterTopology:
    redis_cluster.flush()
    for node in redis_cluster.masters:
        execute(node, "CONFIG", "RESETSTAT")
    return redis_cluster


@pytest.fixture
def cluster_server(start_server, cluster: ClusterTopology) -> ServerProcess:
    return start_server(connection=cluster.url())


@pytest.fixture
def rooms(cluster_server: ServerProcess) -> Iterator[list[ClientConnection]]:
    """PER_FACILITY websockets on each of FACILITIES, subscribed."""
    paths = [f"/ws/{f}?subscribe-broadcast" for f in FACILITIES for _ in range(PER_FACILITY)]
    with ThreadPoolExecutor(8) as pool:
        websockets = list(pool.map(lambda p: cluster_server.connect(p, legacy=True), paths))
    try:
        wanted = {f"broadcast:{f}": PER_FACILITY for f in FACILITIES}
        wait_for(lambda: cluster_server.stats()["channels"] == wanted)
        yield websockets
    finally:
        for ws in websockets:
            ws.close()


def publisher(cluster: ClusterTopology, facility: str, **options) -> RedisPublisher:
    settings = Settings(connection=cluster.connection(), **{"expire": 0, **options})
    return RedisPublisher(facility=facility, broadcast=True, settings=settings)


def owner(cluster: ClusterTopology, channel: str) -> ClusterNode:
    return cluster.node_for_slot(key_slot(channel.encode()))


def pubsub_clients(node: ClusterNode) -> int:
    return len(execute(node, "CLIENT", "LIST", "TYPE", "pubsub").splitlines())


def command_calls(node: ClusterNode, command: str) -> int:
    stats = info(node, "commandstats").get(f"cmdstat_{command}")
    return int(stats.split(",")[0].split("=")[1]) if stats else 0


def test_channels_spread_over_the_shards_with_one_connection_per_shard(cluster, rooms):
    by_node = {
        node.port: sorted(ch.decode() for ch in execute(node, "PUBSUB", "SHARDCHANNELS"))
        for node in cluster.masters
    }
    expected: dict[int, list[str]] = {node.port: [] for node in cluster.masters}
    for facility in FACILITIES:
        channel = f"broadcast:{facility}"
        expected[owner(cluster, channel).port].append(channel)
    assert by_node == {port: sorted(channels) for port, channels in expected.items()}
    assert all(by_node.values()), "the channels should land on every shard"
    # 24 websockets, 12 channels, 3 shards: one pub/sub connection on each shard.
    assert [pubsub_clients(node) for node in cluster.masters] == [1, 1, 1]
    for node in cluster.masters:
        assert execute(node, "PUBSUB", "CHANNELS") == []  # nothing on classic pub/sub


def test_publishing_is_spublish_on_the_shard_owning_the_channel(cluster, rooms):
    for facility in FACILITIES:
        assert publisher(cluster, facility).publish_message(f"to {facility}") == 1
    for index, ws in enumerate(rooms):
        assert ws.recv(timeout=5) == f"to {FACILITIES[index // PER_FACILITY]}"
    for node in cluster.masters:
        owned = [f for f in FACILITIES if owner(cluster, f"broadcast:{f}") is node]
        assert command_calls(node, "spublish") == len(owned)
        assert command_calls(node, "publish") == 0


def test_persisted_message_is_replayed_and_fetched_across_slots(cluster, cluster_server):
    pub = publisher(cluster, "notes", expire=60)
    assert pub.publish_message("remember me") == 0  # nobody listens yet
    with cluster_server.connect("/ws/notes?subscribe-broadcast") as ws:
        assert ws.recv(timeout=5) == "remember me"
    # The message and its time stamp live in different slots (MGET would be CROSSSLOT).
    assert pub.fetch_message(None, "notes", audience="broadcast") == b"remember me"


def test_websocket_publishes_through_the_shard_of_its_channel(cluster, cluster_server):
    path = "/ws/chat?subscribe-broadcast&publish-broadcast"
    with cluster_server.connect(path) as sender, cluster_server.connect(path) as listener:
        wait_for(lambda: cluster_server.stats()["channels"].get("broadcast:chat") == 2)
        sender.send("hello shard")
        assert listener.recv(timeout=5) == "hello shard"
    node = owner(cluster, "broadcast:chat")
    assert command_calls(node, "spublish") == 1


def test_last_websocket_leaving_releases_the_shard_channel(cluster, cluster_server):
    channel = "broadcast:brief"
    node = owner(cluster, channel)
    with cluster_server.connect("/ws/brief?subscribe-broadcast"):
        wait_for(lambda: execute(node, "PUBSUB", "SHARDCHANNELS") == [channel.encode()])
    wait_for(lambda: execute(node, "PUBSUB", "SHARDCHANNELS") == [])
    assert cluster_server.stats()["channels"] == {}


def move_slot(cluster: ClusterTopology, slot: int, target: ClusterNode) -> None:
    """Hand an (empty) slot to ``target``, as a resharding does at its end."""
    for node in [target, *[n for n in cluster.masters if n is not target]]:
        execute(node, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

    def everyone_agrees() -> bool:
        for node in cluster.masters:
            ranges = execute(node, "CLUSTER", "SLOTS")
            if not any(r[0] <= slot <= r[1] and r[2][1] == target.port for r in ranges):
                return False
        return True

    wait_for(everyone_agrees)


def test_channel_follows_its_slot_to_another_shard(cluster, cluster_server):
    """When its slot moves, the shard drops the subscription (SUNSUBSCRIBE from the server):
    the hub subscribes on the new owner, and the open websocket keeps receiving."""
    channel = "broadcast:moving"
    slot = key_slot(channel.encode())
    source = owner(cluster, channel)
    target = next(node for node in cluster.masters if node is not source)
    with cluster_server.connect("/ws/moving?subscribe-broadcast") as ws:
        wait_for(lambda: execute(source, "PUBSUB", "SHARDCHANNELS") == [channel.encode()])
        try:
            move_slot(cluster, slot, target)
            wait_for(lambda: execute(target, "PUBSUB", "SHARDCHANNELS") == [channel.encode()])
            assert execute(source, "PUBSUB", "SHARDCHANNELS") == []
            assert publisher(cluster, "moving").publish_message("after the move") == 1
            assert ws.recv(timeout=5) == "after the move"
        finally:
            move_slot(cluster, slot, source)
        wait_for(lambda: execute(source, "PUBSUB", "SHARDCHANNELS") == [channel.encode()])
        assert publisher(cluster, "moving").publish_message("and back") == 1
        assert ws.recv(timeout=5) == "and back"
