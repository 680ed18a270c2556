"""Several processes on one Redis: three independent server processes (standing in for hosts)
and a gunicorn with three workers. A message published once reaches every websocket of every
process exactly once, and Redis sees one subscriber per process, not one per websocket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import wait_for
from redis_server import execute
from websockets.sync.client import ClientConnection, connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
CHANNEL = "broadcast:scale"
PATH = "/ws/scale?subscribe-broadcast"
MESSAGES = 50
PER_SERVER = 8
GUNICORN_WORKERS = 3
END = "end"
WORKER_CLASS = "ws4redis_gevent.gunicorn.GeventWebSocketWorker"


@pytest.fixture
def gunicorn_workers(redis_url: str, tmp_path: Path) -> Iterator[int]:
    """A gunicorn with GUNICORN_WORKERS gevent websocket workers; yields its port."""
    env = {
        **os.environ,
        "WS4REDIS_TEST_OPTIONS": json.dumps({"connection": redis_url}),
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
    }
    log_path = tmp_path / "gunicorn.log"  # a file: a pipe nobody reads would fill and block
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", WORKER_CLASS, "--bind", "127.0.0.1:0",
             "--workers", str(GUNICORN_WORKERS), "gunicorn_app:app"],
            env=env, cwd=TESTS, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip

    def started() -> int | None:
        text = log_path.read_text()
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if match and text.count("Booting worker") >= GUNICORN_WORKERS:
            return int(match.group(1))
        assert proc.poll() is None, f"gunicorn exited:\n{text}"
        return None

    try:
        yield wait_for(started, timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the master and its workers
        proc.wait(timeout=10)


def numsub(redis_server) -> int:
    """How many connections (one per process hub) subscribe to CHANNEL."""
    return execute(redis_server, "PUBSUB", "NUMSUB", CHANNEL)[1]


def open_websockets(urls: list[str]) -> list[ClientConnection]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda url: connect(url, open_timeout=10, legacy=True), urls))


def received_until_end(ws: ClientConnection) -> list[str]:
    """Everything the websocket received before END (a duplicate would show up in it)."""
    got = []
    while (message := ws.recv(timeout=10)) != END:
        got.append(message)
    return got


def test_message_published_once_reaches_every_websocket_of_every_process_once(
    start_server, gunicorn_workers, redis_url, redis_server
):
    servers = [start_server() for _ in range(3)]
    urls = [server.ws_url(PATH) for server in servers for _ in range(PER_SERVER)]
    # Websockets opened concurrently, until every gunicorn worker serves some (its hub then
    # subscribes): the kernel hands connections to whichever worker accepts first.
    gunicorn_url = f"ws://127.0.0.1:{gunicorn_workers}{PATH}"
    websockets = open_websockets(urls)
    try:
        while numsub(redis_server) < len(servers) + GUNICORN_WORKERS:
            assert len(websockets) < 400, "connections never reached every gunicorn worker"
            websockets += open_websockets([gunicorn_url] * 12)
        for server in servers:
            wait_for(lambda s=server: s.stats()["channels"].get(CHANNEL) == PER_SERVER)

        settings = Settings(connection=redis_url, expire=0)
        publisher = RedisPublisher(facility="scale", broadcast=True, settings=settings)
        receivers = [publisher.publish_message(str(n)) for n in range(MESSAGES)]
        publisher.publish_message(END)

        # Redis delivers each message once per process (its hub), never once per websocket.
        assert receivers == [len(servers) + GUNICORN_WORKERS] * MESSAGES
        expected = [str(n) for n in range(MESSAGES)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(received_until_end, websockets))
        assert all(got == expected for got in results), [
            len(got) for got in results if got != expected
        ]
        assert sum(len(got) for got in results) == MESSAGES * len(websockets)
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda ws: ws.close(), websockets))
