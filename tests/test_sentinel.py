"""Redis Sentinel: the hub and RedisPublisher find the master through real sentinels, and a real
failover (the master's process is killed) keeps websockets open while the hub resubscribes on
the new master. What is lost in the window is measured; with history, recovery fills it."""

from __future__ import annotations

import time

import pytest
import redis
from conftest import wait_for
from redis_server import execute
from redis_topologies import PublishingLoop, SentinelTopology, info
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

END = "end"
HISTORY = {"feed": {"size": 1000, "ttl": 600}}


def publisher_for(connection, facility: str, **options) -> RedisPublisher:
    settings = Settings(connection=connection, **{"expire": 0, **options})
    return RedisPublisher(facility=facility, broadcast=True, settings=settings)


@pytest.fixture
def sentinels(sentinel_topology: SentinelTopology) -> SentinelTopology:
    return sentinel_topology


def replica_caught_up(sentinels: SentinelTopology) -> bool:
    master = sentinels.master()
    offset = int(info(master, "replication")["master_repl_offset"])
    replicas = [s for s in sentinels.servers if s is not master and s.running]
    return all(int(info(r, "replication")["slave_repl_offset"]) >= offset for r in replicas)


def failover(sentinels: SentinelTopology, loop: PublishingLoop) -> dict[str, float]:
    """Kill the master with publishing paused (so nothing acknowledged is unreplicated), resume
    publishing at once, and wait for the sentinels to promote the replica."""
    loop.pause()
    wait_for(lambda: replica_caught_up(sentinels))
    killed_at = time.monotonic()
    old = sentinels.kill_master()
    loop.resume()
    sentinels.wait_for_new_master(old)
    return {"killed_at": killed_at, "promoted_after": time.monotonic() - killed_at}


def test_hub_and_publisher_find_the_master_through_sentinel(start_server, sentinels):
    server = start_server(connection=sentinels.connection())
    publisher = publisher_for(sentinels.url(), "news", expire=60)
    with server.connect("/ws/news?subscribe-broadcast") as ws:
        wait_for(lambda: server.stats()["channels"].get("broadcast:news") == 1)
        assert publisher.publish_message("via sentinel") == 1
        assert ws.recv(timeout=5) == "via sentinel"
    master = sentinels.master()
    assert execute(master, "GET", "broadcast:news") == b"via sentinel"
    replica = next(s for s in sentinels.servers if s is not master)
    assert execute(replica, "PUBSUB", "NUMSUB", "broadcast:news")[1] == 0  # hub on the master


def test_failover_keeps_websockets_open_and_the_hub_resubscribes_on_the_new_master(
    start_server, sentinels, publishing
):
    server = start_server(connection=sentinels.connection())
    websockets: list[ClientConnection] = [
        server.connect("/ws/live?subscribe-broadcast", legacy=True) for _ in range(3)
    ]
    try:
        wait_for(lambda: server.stats()["channels"].get("broadcast:live") == 3)
        loop = publishing(PublishingLoop(publisher_for(sentinels.url(), "live")))
        wait_for(lambda: loop.delivered_after(0) >= 20)
        figures = failover(sentinels, loop)
        # Publishing goes on until 50 messages reached the hub on the new master.
        wait_for(lambda: loop.delivered_after(figures["killed_at"]) >= 50, timeout=30)
        loop.stopped.set()
        end = publisher_for(sentinels.url(), "live")
        wait_for(lambda: end.publish_message(END) > 0)

        attempts = list(loop.attempts)
        delivered = [str(a.number) for a in attempts if a.receivers]
        for ws in websockets:
            got = []
            while (message := ws.recv(timeout=10)) != END:
                got.append(message)
            # Open all along, in order, nothing twice, and every message Redis delivered to
            # the hub reached every websocket.
            assert got == sorted(set(got), key=int)
            assert set(delivered) <= set(got)
        assert server.stats()["reconnects"] >= 1
        assert all(isinstance(error, redis.ConnectionError) for error in loop.errors)

        after = [a for a in attempts if a.at > figures["killed_at"]]
        first_delivered = next(a for a in after if a.receivers)
        lost = [a for a in after if a.at < first_delivered.at and a.receivers == 0]
        refused = [a for a in after if a.at < first_delivered.at and a.receivers is None]
        # Shown with pytest -s; docs/scaling.rst quotes them.
        print(
            f"\nsentinel failover: promoted after {figures['promoted_after']:.2f}s, "
            f"hub receiving again after {first_delivered.at - figures['killed_at']:.2f}s; "
            f"{len(refused)} publishes raised, {len(lost)} published to nobody (lost)"
        )
    finally:
        for ws in websockets:
            ws.close()


def test_failover_window_is_recovered_from_history(start_server, sentinels, publishing):
    """A websocket with ``recover`` is told to resync when the hub loses the master; it
    reconnects with its position and gets every message whose publish succeeded, once."""
    server = start_server(connection=sentinels.connection(), history=HISTORY, expire=0)
    ws = server.connect("/ws/feed?subscribe-broadcast&recover", legacy=True)
    wait_for(lambda: server.stats()["channels"].get("broadcast:feed") == 1)
    loop = publishing(PublishingLoop(publisher_for(sentinels.url(), "feed", history=HISTORY)))
    received: list[str] = []
    position = None
    try:
        while len(received) < 20:
            _, position, payload = split(ws.recv(timeout=5))
            received.append(payload)
        figures = failover(sentinels, loop)
        while (frame := ws.recv(timeout=15)) != "!resync *":
            _, position, payload = split(frame)
            received.append(payload)
    finally:
        ws.close()
    path = f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{position}"
    ws = wait_for(lambda: reconnect(server, path), timeout=30)
    try:
        wait_for(lambda: loop.delivered_after(figures["killed_at"]) >= 30, timeout=30)
        loop.stopped.set()
        wait_for(lambda: publisher_for(sentinels.url(), "feed", history=HISTORY)
                 .publish_message(END) > 0)  # fmt: skip
        while (payload := split(ws.recv(timeout=10))[2]) != END:
            received.append(payload)
    finally:
        ws.close()
    succeeded = [str(a.number) for a in loop.attempts if a.receivers is not None]
    assert received == succeeded


def split(frame: str | bytes) -> tuple[str, str, str]:
    """A tagged frame: (label, position, payload)."""
    text = frame.decode() if isinstance(frame, bytes) else frame
    head, _, payload = text.partition("\n")
    label, _, position = head.partition(" ")
    return label, position, payload


def reconnect(server, path: str) -> ClientConnection | None:
    """A websocket, or None while the server answers 503 (Redis still failing over)."""
    try:
        return server.connect(path, legacy=True)
    except InvalidStatus as exc:
        assert exc.response.status_code == 503
        return None
