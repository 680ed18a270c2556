"""The gunicorn worker class: websockets served by gunicorn, closed with 1001 on shutdown."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def start_gunicorn(
    redis_url: str, *extra: str, stdout: int | None = None, options: dict | None = None
):
    """gunicorn with one GeventWebSocketWorker (middleware ``options``); returns (process,
    port) once it booted."""
    env = {
        **os.environ,
        "WS4REDIS_TEST_OPTIONS": json.dumps({"connection": redis_url, **(options or {})}),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "ws4redis_gevent.gunicorn.GeventWebSocketWorker",
         "--bind", "127.0.0.1:0", "--graceful-timeout", "10", "--workers", "1", *extra,
         "gunicorn_app:app"],
        env=env, cwd=TESTS, stderr=subprocess.PIPE, stdout=stdout, text=True,
    )
    port = None
    lines = []
    deadline = time.monotonic() + 20
    assert proc.stderr is not None
    while port is None or not any("Booting worker" in line for line in lines):
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"Listening at: https?://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("gunicorn did not start:\n" + "".join(lines))
    return proc, port


@pytest.fixture
def gunicorn(redis_url):
    proc, port = start_gunicorn(redis_url)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def test_gunicorn_worker_serves_websockets_and_http(gunicorn, redis_url):
    proc, port = gunicorn
    with connect(f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast", open_timeout=10) as ws:
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(redis_url)
        # The worker boots lazily; publish until the subscription is live.
        while client.publish("broadcast:news", "hello gunicorn") == 0:
            assert time.monotonic() < deadline, "subscription never became live"
            time.sleep(0.05)
        assert ws.recv(timeout=5) == "hello gunicorn"
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/plain", timeout=5) as response:
        assert response.read() == b"app saw GET /plain"


@pytest.mark.parametrize("extra", [[], ["--preload"]], ids=["app loaded in the worker", "preload"])
def test_worker_freezes_the_loaded_application_for_the_garbage_collector(redis_url, extra):
    """The worker serves with the objects of the loaded app (its modules, the middleware)
    frozen: full collections then walk only what requests and websockets created. With
    --preload (the app loaded in the master) too."""
    import urllib.request

    proc, port = start_gunicorn(redis_url, *extra)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as response:
            frozen = json.load(response)["gc_frozen"]
        assert frozen > 10_000  # the interpreter, gevent, redis-py, ws4redis_gevent, the app
        url = f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast&publish-broadcast&echo"
        with connect(url, open_timeout=10) as ws:
            ws.send("served")
            assert ws.recv(timeout=5) == "served"
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_sigterm_closes_websockets_with_going_away(gunicorn):
    proc, port = gunicorn
    with connect(f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast", open_timeout=10) as ws:
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=8)
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1001
    assert proc.wait(timeout=15) == 0


def test_access_log_of_a_websocket_has_its_request_headers(redis_url):
    """The access log line of a websocket request names its request headers, which the
    backend serves from the environ once it let pywsgi's parsed headers go."""
    log_format = "%(r)s %(s)s ua=%({user-agent}i)s custom=%({x-custom}i)s"
    proc, port = start_gunicorn(
        redis_url, "--access-logfile", "-", "--access-logformat", log_format,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast"
        headers = {"User-Agent": "log-test/1.0", "X-Custom": "here"}
        with connect(url, open_timeout=10, additional_headers=headers, user_agent_header=None):
            pass
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "GET /ws/news?subscribe-broadcast" in line, line
        assert " 101 " in line and "ua=log-test/1.0" in line and "custom=here" in line, line
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def plain_request(sock: socket.socket) -> bytes:
    """One keep-alive request for /plain on ``sock``; returns the response (its length is
    known: the test app gives a Content-Length)."""
    sock.sendall(b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response or not response.endswith(b"app saw GET /plain"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {response!r}"
        response += chunk
    return response


def test_worker_applies_the_handshake_timeout(redis_url):
    """pywsgi has no deadline for a request to arrive; the worker's handler has
    WS4REDIS_HANDSHAKE_TIMEOUT: a silent connection is dropped, a request whose headers never
    end gets 408 (and an access log line, not a traceback); idle kept-alive connections and
    websockets outlive it."""
    proc, port = start_gunicorn(
        redis_url, "--access-logfile", "-", stdout=subprocess.PIPE,
        options={"handshake_timeout": 0.5},
    )  # fmt: skip
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert read_until_eof(sock) == b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /ws/news?subscribe-broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert read_until_eof(sock).startswith(b"HTTP/1.1 408 ")
        # A kept-alive connection may stay idle past the deadline (proxies keep their
        # upstream connections open): its next request is served.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert plain_request(sock).startswith(b"HTTP/1.1 200 ")
            closed, _, _ = select.select([sock], [], [], 1.5)  # three deadlines
            assert not closed, "the worker closed an idle kept-alive connection"
            assert plain_request(sock).startswith(b"HTTP/1.1 200 ")
        url = f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast&publish-broadcast&echo"
        with connect(url, open_timeout=10) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.5)
            ws.send("still open")
            assert ws.recv(timeout=5) == "still open"
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=15)
    assert '"GET /ws/news?subscribe-broadcast HTTP/1.1" 408' in stdout, stdout
    assert "Traceback" not in stderr, stderr[-3000:]


@pytest.mark.parametrize(
    "worker",
    [
        "ws4redis_gevent.gunicorn.GeventWebSocketWorker",
        "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
    ],
)
@pytest.mark.parametrize("django", [False, True], ids=["wsgi", "django"])
def test_plain_start_prints_no_monkey_patch_warning(
    redis_url, worker, django, tmp_path, monkeypatch
):
    """gunicorn's master imports the worker class before the worker monkey-patches: that
    import must not import redis (and with it ssl), or gevent warns (MonkeyPatchWarning naming
    redis.asyncio.connection). The worker serves a websocket, then its stderr is read."""
    from stacks import make_stack
    from stacks import start_gunicorn as start_stack_gunicorn

    monkeypatch.setenv("WS4REDIS_TEST_DB", str(tmp_path / "db.sqlite3"))
    stack = make_stack("gunicorn", {"connection": redis_url, "django": django})
    try:
        start_stack_gunicorn(stack, worker=worker)
        stack.wait_until_serving()
        with stack.connect("/ws/chat?subscribe-broadcast&publish-broadcast&echo") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
    finally:
        logs = stack.stop()
    assert "Booting worker" in logs
    assert "MonkeyPatchWarning" not in logs and "Traceback" not in logs, logs
