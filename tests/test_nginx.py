"""nginx in front, configured with the blocks of docs/deployment.rst (tests/stacks.py reads them):
read timeouts against the heartbeat, the Emperor running a separate uWSGI websocket instance, TLS.

The frame-level scenarios run behind nginx in tests/test_stacks.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from stacks import (
    APP,
    NGINX_STACKS,
    Stack,
    documented_sample,
    make_stack,
    missing_binary,
    start_gunicorn,
    start_nginx,
    start_stack,
    systemd_directives,
    uwsgi_binary,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

pytestmark = pytest.mark.integration

HEARTBEAT = "--heartbeat--"
LISTENER = "/ws/news?subscribe-broadcast"
NO_PINGS = {"ping_interval": 60, "ping_timeout": 60}  # only the heartbeat, if any, is traffic


@pytest.fixture
def stacks(redis_url) -> Iterator[Callable[..., Stack]]:
    """Start a named stack (tests/stacks.py) with middleware options; stopped after the test."""
    started: list[Stack] = []

    def start(kind: str, read_timeout: str | None = None, **options) -> Stack:
        reason = missing_binary(kind)
        if reason:
            pytest.skip(reason)
        stack = start_stack(kind, {"connection": redis_url, **options}, read_timeout)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def publish(redis_url: str, message: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.publish("broadcast:news", message) == 1


@pytest.mark.parametrize("kind", NGINX_STACKS)
def test_websocket_outlives_read_timeout_with_heartbeat(stacks, redis_url, kind):
    """nginx's read timeout is 1 s here; the server's heartbeat every 0.3 s keeps an idle
    websocket open for 2.5 s, and it still receives."""
    stack = stacks(kind, "1s", heartbeat=HEARTBEAT, heartbeat_interval=0.3, **NO_PINGS)
    with stack.connect(LISTENER) as ws:
        for _ in range(8):  # 2.4 s of heartbeats, more than twice the read timeout
            assert ws.recv(timeout=5) == HEARTBEAT
        publish(redis_url, "still open")
        while (message := ws.recv(timeout=5)) == HEARTBEAT:
            pass
        assert message == "still open"


@pytest.mark.parametrize("kind", NGINX_STACKS)
def test_silent_websocket_is_cut_at_read_timeout(stacks, kind):
    """Without heartbeat nor pings, nginx closes the websocket after its read timeout: the
    timeout the heartbeat must beat is real."""
    stack = stacks(kind, "1s", **NO_PINGS)
    with stack.connect(LISTENER) as ws, pytest.raises(ConnectionClosedError):
        ws.recv(timeout=10)


@pytest.fixture
def bare_stack(redis_url) -> Iterator[Stack]:
    """A stack with nothing started, for tests that assemble their own."""
    reason = missing_binary("nginx")
    if reason:
        pytest.skip(reason)
    stack = make_stack("nginx-custom", {"connection": redis_url})
    yield stack
    stack.stop()


def documented_vassals(directory: Path) -> Path:
    """docs/deployment.rst's two vassal files, in ``directory``/vassals; the test changes the
    paths (/run/uwsgi/ is ``directory``), the module (the test app) and gives each a log file."""
    vassals = directory / "vassals"
    vassals.mkdir()
    for name in ("django", "websockets"):
        ini = documented_sample("tested-deployment", f"uwsgi-{name}-ini")
        ini = ini.replace("/run/uwsgi/", f"{directory}/").replace("myproject.wsgi:application", APP)
        (vassals / f"{name}.ini").write_text(ini + f"logto = {directory}/{name}.log\n")
    return vassals


def documented_emperor(vassals: Path) -> list[str]:
    """The Emperor unit's ExecStart: this venv's uwsgi, the test's vassals directory. Without
    --uid/--gid (the vassals would need a system user and access to the test's files), and
    scanning every second instead of every 3 s, to keep the test short."""
    unit = systemd_directives(documented_sample("tested-deployment", "uwsgi-emperor-systemd"))
    argv = shlex.split(unit["ExecStart"])
    assert argv[:2] == ["/srv/myproject/venv/bin/uwsgi", "--emperor"], argv
    for flag in ("--uid", "--gid"):
        del argv[argv.index(flag) : argv.index(flag) + 2]
    return [str(uwsgi_binary()), "--emperor", str(vassals), *argv[3:], "--emperor-freq", "1"]


def test_emperor_runs_the_separate_websocket_instance_behind_nginx(bare_stack):
    """The documented split, run by the Emperor: nginx sends /ws/ to the gevent vassal and the
    rest to the prefork vassal over uwsgi_pass; touching the websocket vassal's file reloads it
    gracefully, closing its websockets with 1001, and it serves again."""
    reason = missing_binary("uwsgi")
    if reason:
        pytest.skip(reason)
    stack = bare_stack
    vassals = documented_vassals(stack.workdir)
    stack.spawn("emperor", documented_emperor(vassals))
    sockets = {name: stack.workdir / f"{name}.sock" for name in ("websockets", "django")}
    wait_for(lambda: all(path.exists() for path in sockets.values()), timeout=20)
    start_nginx(stack, "uwsgi", {
        f"unix:/run/uwsgi/{name}.sock": f"unix:{path}" for name, path in sockets.items()
    })  # fmt: skip
    stack.wait_until_serving()
    assert_echoes(stack)
    assert stack.get("/plain") == (200, b"app saw GET /plain")
    logs = {name: stack.workdir / f"{name}.log" for name in sockets}
    # uWSGI logs a request once it has ended, a moment after the client has its answer.
    wait_for(lambda: "GET /ws/news" in logs["websockets"].read_text(), timeout=10)
    wait_for(lambda: "GET /plain" in logs["django"].read_text(), timeout=10)
    assert "GET /plain" not in logs["websockets"].read_text()
    assert "GET /ws/" not in logs["django"].read_text()

    with stack.connect("/ws/reload?subscribe-broadcast") as ws:
        # The Emperor compares modification times in whole seconds: move it on by two.
        later = time.time() + 2
        os.utime(vassals / "websockets.ini", (later, later))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    wait_for(lambda: _echoes(stack), timeout=20)


def assert_echoes(stack: Stack) -> None:
    assert _echoes(stack)


def _echoes(stack: Stack) -> bool:
    try:
        with stack.connect("/ws/news?subscribe-broadcast&publish-broadcast&echo") as ws:
            ws.send("echo")
            return ws.recv(timeout=5) == "echo"
    except (OSError, InvalidStatus, ConnectionClosed):
        return False


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_wss_through_nginx(bare_stack, redis_url):
    """The documented TLS block: wss:// and https:// to nginx, plain HTTP to gunicorn."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    stack = bare_stack
    cert, key = self_signed_certificate(stack.workdir)
    sock = stack.workdir / "gunicorn.sock"
    start_gunicorn(stack, bind=f"unix:{sock}")
    start_nginx(stack, "tls", {"127.0.0.1:8000": f"unix:{sock}"}, tls=(cert, key))
    stack.ssl_context = ssl.create_default_context(cafile=str(cert))
    stack.wait_until_serving()
    assert stack.ws_url("/ws/x").startswith("wss://")
    with stack.connect(LISTENER) as listener:
        publish(redis_url, "over TLS")
        assert listener.recv(timeout=5) == "over TLS"
        listener.close(4001, "bye")
        assert listener.protocol.close_rcvd is not None
        assert listener.protocol.close_rcvd.code == 4001
    assert stack.get("/plain") == (200, b"app saw GET /plain")
