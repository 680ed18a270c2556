"""Faults against real processes: Redis going away mid-stream or absent at start, clients that
vanish without a close frame, and SIGTERM on a gunicorn worker full of websockets.

What each test proves: websockets survive what they can survive, resources are released for
those that cannot, nothing is lost silently (a publish that cannot reach Redis raises), and
the worker goes on serving the others.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from redis_server import RedisServer, free_port, pubsub_channels
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LISTENER = "/ws/news?subscribe-broadcast"


def publisher(url: str) -> RedisPublisher:
    return RedisPublisher(facility="news", broadcast=True, settings=Settings(connection=url))


# -- Redis restarts mid-stream -------------------------------------------------------------


def test_redis_outage_mid_stream_loses_only_what_failed_loudly(
    start_server, redis_server, redis_url
):
    """A stream of messages while Redis dies and comes back: the websocket stays open;
    publishes during the outage raise in RedisPublisher; the listener receives every message
    whose publish succeeded, in order, none twice; a websocket that publishes during the
    outage is closed with 1013 (try again later)."""
    server = start_server(expire=0)
    sent: list[str] = []
    with (
        server.connect(LISTENER) as listener,
        server.connect("/ws/news?publish-broadcast") as talker,
    ):
        for n in range(50):
            publisher(redis_url).publish_message(f"before {n}")
            sent.append(f"before {n}")
        assert [listener.recv(timeout=5) for _ in sent] == sent
        redis_server.kill()
        try:
            failures = 0
            for n in range(20):
                with pytest.raises(redis.ConnectionError):
                    publisher(redis_url).publish_message(f"during {n}")
                failures += 1
            talker.send("from a websocket during the outage")
            with pytest.raises(ConnectionClosedError):
                talker.recv(timeout=10)
            assert talker.protocol.close_rcvd is not None
            assert talker.protocol.close_rcvd.code == 1013
        finally:
            redis_server.start()
        wait_for(lambda: pubsub_channels(redis_server) == [b"broadcast:news"], timeout=15)
        after = [f"after {n}" for n in range(50)]
        for message in after:
            publisher(redis_url).publish_message(message)
        assert [listener.recv(timeout=5) for _ in after] == after
        with pytest.raises(TimeoutError):
            listener.recv(timeout=0.3)  # nothing more: no duplicate, no lost-and-found
    assert failures == 20


def test_hub_reconnects_with_backoff(start_server, redis_server):
    """During a 2 s outage the hub retries a handful of times, not in a tight loop, then
    resubscribes; the websocket never notices."""
    server = start_server()
    with server.connect(LISTENER) as ws:
        wait_for(lambda: pubsub_channels(redis_server) == [b"broadcast:news"])
        redis_server.kill()
        try:
            wait_for(lambda: server.stats()["reconnects"] >= 1)
            time.sleep(2)  # the outage itself: its length is what the retries are counted over
        finally:
            redis_server.start()
        wait_for(lambda: pubsub_channels(redis_server) == [b"broadcast:news"], timeout=15)
        attempts = server.stats()["reconnects"]
        assert 2 <= attempts <= 12, attempts  # backoff 0.1, 0.2, 0.4 ... up to 5 s
        with redis.Redis.from_url(redis_server.url) as client:
            assert client.publish("broadcast:news", "back") == 1
        assert ws.recv(timeout=5) == "back"


def test_redis_unreachable_at_worker_start(start_server):
    """A worker started while Redis is down serves HTTP, refuses websockets with 503 (not a
    hang, not a 500), and serves them as soon as Redis is up, without a restart."""
    late_redis = RedisServer()
    late_redis.port = free_port()
    server = start_server(connection=late_redis.url, subscribe_timeout=2.0)
    try:
        import urllib.request

        with urllib.request.urlopen(server.http_url + "/plain", timeout=5) as response:
            assert response.read() == b"app saw GET /plain"
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                server.connect(LISTENER)
            assert refused.value.response.status_code == 503
        late_redis.start()
        ws = wait_for(lambda: _attempt_connect(server, LISTENER), timeout=15)
        with ws:
            with redis.Redis.from_url(late_redis.url) as client:
                assert client.publish("broadcast:news", "redis is here") == 1
            assert ws.recv(timeout=5) == "redis is here"
    finally:
        late_redis.stop()


def _attempt_connect(server, path):
    try:
        return server.connect(path, legacy=True)
    except InvalidStatus:
        return None


# -- clients that vanish -------------------------------------------------------------------

VANISHING = "/ws/news?subscribe-broadcast&subscribe-user&token=t-john"


def vanishing_client(port: int) -> socket.socket:
    """A websocket whose client then vanishes: it never reads, writes or closes again (its
    receive buffer is tiny, so what the server sends piles up as towards a dead host)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {VANISHING} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


@pytest.mark.parametrize("traffic", [0, 8], ids=["idle", "while 8 MiB are sent to it"])
def test_vanished_client_is_detected_by_ping_timeout_and_released(
    start_server, redis_server, redis_url, traffic
):
    """A client gone without a close frame (half-open TCP) is found by the ping timeout and
    everything it held is released: websocket, hub and Redis subscriptions, file descriptor.
    Messages to it may be blocked in a full socket: detection must not depend on writing.
    The healthy client beside it receives everything meanwhile."""
    server = start_server(
        process_request="ws_callbacks.token_auth",
        ping_interval=0.3,
        ping_timeout=0.3,
        max_pending_messages=100_000,  # the pending limit must not be what closes it
        expire=0,
    )
    with server.connect(LISTENER) as healthy:
        baseline = server.stats()["fds"]
        gone = vanishing_client(server.port)
        try:
            wait_for(lambda: b"user:john:news" in pubsub_channels(redis_server))
            with redis.Redis.from_url(redis_url) as client:
                for _ in range(traffic):
                    client.publish("user:john:news", b"\xfe" * (1 << 20))
                for n in range(20):
                    client.publish("broadcast:news", f"news {n}")
            assert [healthy.recv(timeout=5) for _ in range(20)] == [f"news {n}" for n in range(20)]
            wait_for(lambda: server.stats()["websockets"] == 1, timeout=15)
            assert server.stats()["channels"] == {"broadcast:news": 1}
            wait_for(lambda: b"user:john:news" not in pubsub_channels(redis_server))
            wait_for(lambda: server.stats()["fds"] <= baseline, timeout=5)
        finally:
            gone.close()
        assert healthy.ping().wait(5)


# -- SIGTERM -------------------------------------------------------------------------------

GRACEFUL_TIMEOUT = 10


@pytest.fixture
def gunicorn_worker(redis_url):
    """A gunicorn master with one GeventWebSocketWorker; yields (process, port)."""
    env = {
        **os.environ,
        "WS4REDIS_TEST_OPTIONS": json.dumps({"connection": redis_url}),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "ws4redis_gevent.gunicorn.GeventWebSocketWorker",
         "--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL_TIMEOUT), "--workers", "1",
         "gunicorn_app:app"],
        env=env, cwd=TESTS, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    port, worker, lines = None, None, []
    deadline = time.monotonic() + 20
    while port is None or worker is None:
        line = proc.stderr.readline()
        lines.append(line)
        if match := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
        if match := re.search(r"Booting worker with pid: (\d+)", line):
            worker = int(match.group(1))
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("gunicorn did not start:\n" + "".join(lines))
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)  # a worker outlives a killed master
    proc.communicate(timeout=10)


def test_sigterm_closes_every_websocket_with_1001_within_the_grace_period(gunicorn_worker):
    """50 open websockets: on SIGTERM each receives a close frame 1001 (going away), and the
    worker exits cleanly before gunicorn's graceful timeout would kill it."""
    proc, port = gunicorn_worker
    url = f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast"

    def open_one(_: int):
        ws = connect(url, open_timeout=10, legacy=True)
        assert ws.ping().wait(5)  # served by the worker, not just queued in the backlog
        return ws

    with ThreadPoolExecutor(8) as pool:
        websockets = list(pool.map(open_one, range(50)))
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in websockets:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=GRACEFUL_TIMEOUT)
            received = ws.protocol.close_rcvd
            codes.append(received.code if received is not None else None)
        assert codes == [1001] * 50
        assert proc.wait(timeout=GRACEFUL_TIMEOUT + 5) == 0
        # Exited on its own: gunicorn kills a worker only after the graceful timeout.
        assert time.monotonic() - started < GRACEFUL_TIMEOUT
    finally:
        for ws in websockets:
            with contextlib.suppress(Exception):
                ws.close()
