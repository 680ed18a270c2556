"""The process-wide Redis hub: one pub/sub connection per server process whatever the number of
websockets, reference-counted channels, bursts delivered in order, and survival of a Redis
restart. Real server processes, a real redis-server, real websocket clients."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import gevent
import pytest
import redis
from conftest import wait_for
from redis_server import client_count, execute, pubsub_channels

from ws4redis_gevent.hub import IDLE_TIMEOUT, Hub

WORKERS = 8  # websockets opened concurrently; the server's pool may use one connection each


def open_many(server, paths: list[str]) -> list:
    """Open websockets for ``paths``, ``WORKERS`` at a time; they buffer without limit.

    If one cannot be opened, the others are closed and the error is raised.
    """

    def connect(path: str):
        return _attempt(server.connect, path, max_queue=None, legacy=True)

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(connect, paths))
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        close_all([r for r in results if not isinstance(r, Exception)])
        raise errors[0]
    return results


def _attempt(function, *args, **kwargs):
    """``function(*args, **kwargs)``, or the exception it raised."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        return exc


def close_all(websockets: list) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda ws: ws.close(), websockets))


@contextlib.contextmanager
def websockets_open(server, paths: list[str]) -> Iterator[list]:
    websockets: list = []
    try:
        websockets = open_many(server, paths)
        yield websockets
    finally:
        close_all(websockets)


def round_trip(ws) -> None:
    assert ws.ping().wait(5), "no pong"


def numsub(redis_server, channel: str) -> int:
    """How many Redis connections are subscribed to ``channel``."""
    return execute(redis_server, "PUBSUB", "NUMSUB", channel)[1]


def subscriber_connections(redis_server) -> int:
    """How many Redis connections are in pub/sub mode (flag P in CLIENT LIST)."""
    clients = execute(redis_server, "CLIENT", "LIST").decode().splitlines()
    return sum("P" in dict(f.split("=", 1) for f in c.split())["flags"] for c in clients)


def wait_until_idle(server) -> dict:
    """Wait until the server has no websocket left; return its stats."""
    return wait_for(lambda: (s := server.stats())["websockets"] == 0 and s)


def test_one_pubsub_connection_for_200_websockets(server, redis_server):
    """200 websockets on 20 facilities use one subscriber connection: Redis' client count
    after 200 is the count after 10, give or take the pool connections of concurrent opens."""
    baseline = client_count(redis_server)
    first = [f"/ws/f{i % 5}?subscribe-broadcast" for i in range(10)]
    rest = [f"/ws/f{i % 20}?subscribe-broadcast" for i in range(190)]
    expected = Counter(f"broadcast:{path[4:].split('?')[0]}" for path in first + rest)
    with websockets_open(server, first[:1]) as one, websockets_open(server, first[1:]) as nine:
        after_10 = client_count(redis_server)
        assert after_10 - baseline <= 1 + WORKERS  # the pub/sub connection, the pool
        with websockets_open(server, rest) as others:
            after_200 = client_count(redis_server)
            assert after_200 - after_10 <= WORKERS, (baseline, after_10, after_200)
            stats = wait_for(lambda: (s := server.stats())["websockets"] == 200 and s)
            assert stats["channels"] == expected
            assert stats["hubs"] == 1
            assert numsub(redis_server, "broadcast:f0") == 1
            assert subscriber_connections(redis_server) == 1
            with redis.Redis.from_url(redis_server.url) as client:
                assert client.publish("broadcast:f3", "to f3") == 1  # one subscriber: the hub
            f3 = [
                ws
                for ws, path in zip(one + nine + others, first + rest, strict=True)
                if path.startswith("/ws/f3?")
            ]
            assert len(f3) == expected["broadcast:f3"]
            assert {ws.recv(timeout=5) for ws in f3} == {"to f3"}
    stats = wait_until_idle(server)
    assert stats["channels"] == {}


def test_concurrent_first_websockets_share_one_connection(server, redis_server):
    """Websockets arriving together at a fresh server are all accepted and share the one
    pub/sub connection the hub opens (no connection per concurrent first subscription)."""
    together = threading.Barrier(WORKERS)

    def connect_together(path: str):
        together.wait(5)
        return server.connect(path, max_queue=None, legacy=True)

    first_wave = [f"/ws/rush{i}?subscribe-broadcast" for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda p: _attempt(connect_together, p), first_wave))
    opened = [r for r in results if not isinstance(r, Exception)]
    try:
        refused = [r for r in results if isinstance(r, Exception)]
        assert not refused, refused
        with websockets_open(server, first_wave * 4) as more:
            assert subscriber_connections(redis_server) == 1
            channels = {f"broadcast:rush{i}": 5 for i in range(WORKERS)}
            assert server.stats()["channels"] == channels
            with redis.Redis.from_url(redis_server.url) as client:
                assert client.publish("broadcast:rush0", "all here") == 1
            rush0 = [opened[0], *more[::WORKERS]]
            assert [ws.recv(timeout=5) for ws in rush0] == ["all here"] * 5
    finally:
        close_all(opened)


def test_channel_is_released_with_its_last_websocket(server, redis_server, redis_url):
    """A channel stays subscribed while one websocket wants it, and is unsubscribed after."""
    first = server.connect("/ws/foo?subscribe-broadcast", legacy=True)
    with server.connect("/ws/foo?subscribe-broadcast") as second:
        wait_for(lambda: server.stats()["channels"] == {"broadcast:foo": 2})
        assert pubsub_channels(redis_server) == [b"broadcast:foo"]
        first.close()
        wait_for(lambda: server.stats()["channels"] == {"broadcast:foo": 1})
        with redis.Redis.from_url(redis_url) as client:
            client.publish("broadcast:foo", "still here")
        assert second.recv(timeout=5) == "still here"
        assert pubsub_channels(redis_server) == [b"broadcast:foo"]
    wait_for(lambda: pubsub_channels(redis_server) == [])
    assert wait_until_idle(server)["channels"] == {}


def test_pipelined_burst_reaches_every_subscriber_in_order(server, redis_url):
    """1,000 messages sent in one redis-py pipeline all reach each of 5 subscribers, in order."""
    expected = [str(n) for n in range(1000)]
    with websockets_open(server, ["/ws/burst?subscribe-broadcast"] * 5) as websockets:
        wait_for(lambda: server.stats()["channels"] == {"broadcast:burst": 5})
        with redis.Redis.from_url(redis_url) as client, client.pipeline(transaction=False) as pipe:
            for payload in expected:
                pipe.publish("broadcast:burst", payload)
            assert pipe.execute() == [1] * 1000
        for ws in websockets:
            assert [ws.recv(timeout=5) for _ in expected] == expected


def test_messages_reach_every_subscriber_in_order_through_a_write_window(start_server, redis_url):
    """With WS4REDIS_WRITE_WINDOW, messages published one by one, in bursts or not, all arrive,
    in order: the window delays writes, it never drops nor reorders."""
    server = start_server(write_window=20)
    expected = [str(n) for n in range(300)]
    with websockets_open(server, ["/ws/window?subscribe-broadcast"] * 3) as websockets:
        wait_for(lambda: server.stats()["channels"] == {"broadcast:window": 3})
        with redis.Redis.from_url(redis_url) as client:
            for payload in expected[:100]:  # one at a time
                assert client.publish("broadcast:window", payload) == 1
            with client.pipeline(transaction=False) as pipe:  # a burst of 200
                for payload in expected[100:]:
                    pipe.publish("broadcast:window", payload)
                assert pipe.execute() == [1] * 200
        for ws in websockets:
            assert [ws.recv(timeout=5) for _ in expected] == expected


@pytest.mark.parametrize("outage", ["restart", "crash"])
def test_hub_resubscribes_after_redis_restart(server, redis_server, outage):
    """After Redis restarts (same port, empty), websockets stay open, the hub reconnects and
    resubscribes, and messages published afterwards are delivered."""
    with server.connect("/ws/foobar?subscribe-broadcast") as ws:
        wait_for(lambda: pubsub_channels(redis_server) == [b"broadcast:foobar"])
        try:
            if outage == "restart":
                redis_server.restart()
            else:
                redis_server.kill()
                redis_server.start()
            wait_for(lambda: pubsub_channels(redis_server) == [b"broadcast:foobar"])
            assert wait_for(lambda: server.stats()["reconnects"] >= 1)
            round_trip(ws)
            with redis.Redis.from_url(redis_server.url) as client:
                assert client.publish("broadcast:foobar", "after the restart") == 1
            assert ws.recv(timeout=5) == "after the restart"
            # New websockets work too, with the server's pooled connections renewed.
            with server.connect("/ws/foobar?subscribe-broadcast") as newcomer:
                round_trip(newcomer)
                assert server.stats()["channels"] == {"broadcast:foobar": 2}
        finally:
            if not redis_server.running:
                redis_server.start()
    wait_for(lambda: pubsub_channels(redis_server) == [])


def test_open_and_close_many_leaves_nothing_behind(server, redis_server):
    """Rounds of opening and closing websockets leave no channel, websocket or leak behind."""
    paths = [f"/ws/cycle{i % 4}?subscribe-broadcast" for i in range(40)]
    with websockets_open(server, paths):
        pass
    before = wait_until_idle(server)
    for _ in range(3):
        with websockets_open(server, paths) as websockets:
            wait_for(lambda: server.stats()["websockets"] == 40)
            round_trip(websockets[-1])
    after = wait_until_idle(server)
    assert after["channels"] == {}
    wait_for(lambda: pubsub_channels(redis_server) == [])
    assert after["fds"] <= before["fds"] + WORKERS, (before, after)
    assert after["greenlets"] <= before["greenlets"] + WORKERS, (before, after)


class _ScriptedPubSub:
    """A PubSub returning scripted messages, recording each get_message's timeout; raises
    GreenletExit (ending the reader) when the script is done."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.timeouts: list[float] = []

    def get_message(self, timeout: float = 0.0):
        self.timeouts.append(timeout)
        if not self.script:
            raise gevent.GreenletExit
        return self.script.pop(0)


class _RecordingSink:
    """Records deliveries and flushes; like an Outbox, asks for a flush when it was empty."""

    def __init__(self) -> None:
        self.events: list = []

    def deliver(self, message) -> bool:
        was_empty = not self.events or self.events[-1] == "flush"
        self.events.append(message.payload)
        return was_empty

    def flush(self) -> None:
        self.events.append("flush")

    def resync_channel(self, channel: bytes) -> bool:
        return False


def _message(data: bytes) -> dict:
    return {"type": "message", "channel": b"ch", "data": data}


def _read_script(script: list, write_window: float) -> tuple[list, list[float]]:
    pubsub = _ScriptedPubSub(script)
    client = type("Client", (), {"pubsub": lambda self: pubsub})()
    hub = Hub(client, write_window=write_window)  # type: ignore[arg-type]
    sink = _RecordingSink()
    hub._routes[b"ch"] = {sink}
    reader = gevent.spawn(hub._read_until_error)
    reader.join(10)
    assert reader.successful(), reader.exception  # ended by the script's GreenletExit
    return sink.events, pubsub.timeouts


def test_without_write_window_each_message_is_flushed_when_the_buffer_runs_dry():
    """Off (the default): a message that arrives alone is written at once, one flush each."""
    script = [_message(b"a"), None, _message(b"b"), None]
    events, timeouts = _read_script(script, write_window=0.0)
    assert events == [b"a", "flush", b"b", "flush"]
    assert timeouts == [0, 0, IDLE_TIMEOUT, 0, IDLE_TIMEOUT]


def test_write_window_gathers_messages_arriving_within_it_into_one_flush():
    """With a window, the hub waits for more messages until the burst's first one is that old,
    then flushes everything it gathered once: one write per socket for both messages."""
    script = [_message(b"a"), None, _message(b"b"), None, None]
    events, timeouts = _read_script(script, write_window=10.0)
    assert events == [b"a", b"b", "flush"]
    first_wait, second_wait = timeouts[2], timeouts[4]
    assert timeouts[:2] == [0, 0] and timeouts[3] == 0 and timeouts[5:] == [IDLE_TIMEOUT]
    assert 0 < second_wait <= first_wait <= 10.0  # counted from the first message, not reset
