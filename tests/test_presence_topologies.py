"""Presence on real Redis topologies: a Redis Cluster (presence keys in the slot of their hash
tag, events on sharded pub/sub, several server processes, a SIGKILLed one leaves no ghost) and
Sentinel (presence through the master the sentinels name, kept after a failover)."""

from __future__ import annotations

import json
import signal

import pytest
from conftest import wait_for
from redis_server import execute
from redis_topologies import ClusterTopology, SentinelTopology, key_slot

from ws4redis_gevent.keys import presence_keys
from ws4redis_gevent.presence import get_presence
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

TOKEN_AUTH = "ws_callbacks.token_auth"
PRESENCE = {"*": {"ttl": 2, "events_interval": 0.05}}
ROOMS = [f"room{n}" for n in range(6)]


def who(connection, facility: str) -> list[tuple[str, int]]:
    settings = Settings(connection=connection, presence=PRESENCE)
    return [(p.name, p.connections) for p in get_presence(facility, settings=settings)]


def presence_event(ws) -> dict:
    frame = ws.recv(timeout=10)
    assert frame.startswith("!presence broadcast\n"), frame
    return json.loads(frame.partition("\n")[2])


@pytest.fixture
def cluster(redis_cluster: ClusterTopology) -> ClusterTopology:
    redis_cluster.flush()
    return redis_cluster


def test_presence_on_a_cluster_across_processes_and_slots(start_server, cluster):
    """Rooms spread over three shards; users on two server processes; each room's presence
    keys live together on the shard owning their hash tag's slot; a watcher gets events by
    sharded pub/sub; a process killed with SIGKILL leaves no ghost beyond the ttl."""
    first = start_server(connection=cluster.url(), process_request=TOKEN_AUTH, presence=PRESENCE)
    second = start_server(connection=cluster.url(), process_request=TOKEN_AUTH, presence=PRESENCE)
    opened = []
    try:
        for room in ROOMS:
            path = f"/ws/{room}?subscribe-broadcast"
            opened.append(first.connect(path + "&token=t-john", legacy=True))
            opened.append(second.connect(path + "&token=t-mary", legacy=True))
        for room in ROOMS:
            assert who(cluster.connection(), room) == [("john", 1), ("mary", 1)]
            connections, users = presence_keys(None, f"broadcast:{room}")
            tag = f"broadcast:{room}".encode()
            node = cluster.node_for_slot(key_slot(tag))
            assert execute(node, "EXISTS", connections, users) == 2  # both on that shard
        owners = {cluster.node_for_slot(key_slot(f"broadcast:{r}".encode())).port for r in ROOMS}
        assert len(owners) > 1, "the rooms should spread over several shards"
        with second.connect("/ws/room0?subscribe-broadcast&presence&token=t-alice") as watcher:
            assert {u["name"] for u in presence_event(watcher)["users"]} == {
                "alice", "john", "mary"
            }
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
            for room in ROOMS:
                left = [("alice", 1), ("mary", 1)] if room == "room0" else [("mary", 1)]
                wait_for(lambda room=room, left=left: who(cluster.connection(), room) == left)
            while "john" not in {u["name"] for u in presence_event(watcher).get("left", [])}:
                pass
    finally:
        for ws in opened:
            ws.close_socket()


def test_presence_through_sentinel_survives_a_failover(start_server, sentinel_topology):
    """Presence through the master the sentinels name; after a failover that lost it, the next
    refresh makes the connected users present again on the new master."""
    sentinels: SentinelTopology = sentinel_topology
    server = start_server(
        connection=sentinels.connection(), process_request=TOKEN_AUTH, presence=PRESENCE
    )
    with server.connect("/ws/room0?subscribe-broadcast&token=t-john"):
        with server.connect("/ws/room0?subscribe-broadcast&token=t-mary"):
            assert who(sentinels.connection(), "room0") == [("john", 1), ("mary", 1)]
        wait_for(lambda: who(sentinels.connection(), "room0") == [("john", 1)])
        execute(sentinels.master(), "FLUSHALL")  # what a failover without the writes loses
        old = sentinels.kill_master()
        sentinels.wait_for_new_master(old)
        wait_for(lambda: who(sentinels.connection(), "room0") == [("john", 1)], timeout=30)
