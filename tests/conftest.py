"""Fixtures: a real redis-server, real server processes, real websocket clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from websockets.sync.client import ClientConnection, connect

# Fixtures of the Django tests (lazy: Django is configured only by the tests that use them),
# and the Sentinel and Cluster topologies of the scaling tests.
pytest_plugins = ["django_fixtures", "redis_topologies"]

# Projects whose own test runs (in subprocesses: their live server patches the process) are
# started by test_testing_tools.py; never collected into this run.
collect_ignore = ["testing_projects"]

ROOT = Path(__file__).resolve().parent.parent
SERVE = Path(__file__).resolve().parent / "serve.py"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The running server's URL; the database is flushed so each test starts empty."""
    if not redis_server.running:
        redis_server.start()
    from redis_server import execute

    execute(redis_server, "FLUSHALL")
    return redis_server.url


class ServerProcess:
    """A server under test in its own process (gevent pywsgi with the middleware)."""

    def __init__(self, options: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.options = options
        self.env = {**os.environ, "WS4REDIS_TEST_OPTIONS": json.dumps(options), **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVE)], env=self.env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"server did not start: {line!r}\n{err}")
        self.port = int(line.split()[1])
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def connect(self, path: str, **kwargs: Any) -> ClientConnection:
        kwargs.setdefault("open_timeout", 10)
        return connect(self.ws_url(path), **kwargs)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.http_url + "/_stats", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.proc = None
        return err


@pytest.fixture
def start_server(redis_url: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server process with middleware options; stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(**options: Any) -> ServerProcess:
        options.setdefault("connection", redis_url)
        env = options.pop("env", None)
        server = ServerProcess(options, env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A plain-WSGI server with default options."""
    return start_server()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a true value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
