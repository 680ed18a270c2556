"""gunicorn as docs/deployment.rst deploys it (its systemd unit's ExecStart, four workers): a
graceful restart (the unit's ExecReload, HUP) and a stop (TERM, KillMode=mixed) close every open
websocket with 1001 (going away) at once, well within the graceful timeout, and after a restart
the new workers serve the clients that reconnect.

The frame-level scenarios run on gunicorn in tests/test_stacks.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from stacks import (
    APP,
    Process,
    Stack,
    documented_sample,
    make_stack,
    start_gunicorn,
    systemd_directives,
)
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.integration

UNIT = systemd_directives(documented_sample("tested-deployment", "gunicorn-systemd"))
LISTENER = "/ws/news?subscribe-broadcast"


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def documented_argv() -> list[str]:
    """The unit's ExecStart, run from this venv, bound to a free port, serving the test app."""
    argv = shlex.split(UNIT["ExecStart"])
    assert argv[0].endswith("/gunicorn") and argv[-1] == "myproject.wsgi", argv
    bind = argv.index("--bind")
    argv[bind + 1] = "127.0.0.1:0"
    return [sys.executable, "-m", "gunicorn", *argv[1:-1], APP]


ARGV = documented_argv()
GRACEFUL_TIMEOUT = float(option(ARGV, "--graceful-timeout"))
WORKERS = int(option(ARGV, "--workers"))


def test_documented_command_is_the_units():
    """The gunicorn command shown first and the unit's ExecStart differ only by the bind
    address, so running the unit's (below) runs both."""
    command = shlex.split(
        documented_sample("tested-deployment", "gunicorn-command").replace("\\\n", " ")
    )
    unit = shlex.split(UNIT["ExecStart"])
    for argv in (command, unit):
        del argv[argv.index("--bind") : argv.index("--bind") + 2]
    assert command[1:] == unit[1:]
    assert UNIT["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert UNIT["KillMode"] == "mixed"  # systemctl stop: TERM to gunicorn's arbiter only
    assert float(UNIT["TimeoutStopSec"]) > GRACEFUL_TIMEOUT


@pytest.fixture
def gunicorn(redis_url) -> Iterator[tuple[Stack, Process]]:
    stack = make_stack("gunicorn", {"connection": redis_url})
    try:
        arbiter = start_gunicorn(stack, argv=ARGV)
        wait_for(lambda: arbiter.output().count("Booting worker with pid") == WORKERS, 20)
        # A signal that reaches a worker still starting up waits for the graceful timeout.
        pids = [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", arbiter.output())]
        wait_for(lambda: all(worker_running(pid) for pid in pids), 20)
        stack.wait_until_serving()
        yield stack, arbiter
    finally:
        stack.stop()


def worker_running(pid: int) -> bool:
    """Whether gunicorn worker ``pid`` has entered its serving loop: the loop's first heartbeat
    sets the mtime of the worker's (unlinked) temporary file to a monotonic clock reading, far
    below the wall-clock time the file was created with."""
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if "wgunicorn-" in os.readlink(fd):
                    return os.stat(fd).st_mtime < 1e9
    return False


def closed_with(ws) -> int:
    """Read until the server closes; the code of its close frame (fails without one)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=GRACEFUL_TIMEOUT + 5)
    received = closed.value.rcvd
    assert received is not None, "the connection dropped without a close frame"
    return received.code


def open_websockets(stack: Stack, count: int, exit_stack: contextlib.ExitStack) -> list:
    """``count`` websockets, spread over the workers as the kernel hands out connections."""
    return [exit_stack.enter_context(stack.connect(LISTENER)) for _ in range(count)]


def test_reload_closes_websockets_with_going_away_and_new_workers_serve(gunicorn):
    """ExecReload (HUP): the old workers close their websockets with 1001 at once, then exit;
    the new workers serve."""
    stack, arbiter = gunicorn
    with contextlib.ExitStack() as exit_stack:
        websockets = open_websockets(stack, 6, exit_stack)
        started = time.monotonic()
        arbiter.send_signal(signal.SIGHUP)
        assert [closed_with(ws) for ws in websockets] == [1001] * len(websockets)
    assert time.monotonic() - started < GRACEFUL_TIMEOUT
    booted = lambda: arbiter.output().count("Booting worker with pid") == 2 * WORKERS  # noqa: E731
    wait_for(booted, timeout=20)
    exited = lambda: arbiter.output().count("Worker exiting") == WORKERS  # noqa: E731
    wait_for(exited, timeout=GRACEFUL_TIMEOUT)
    with stack.connect("/ws/news?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send("after the restart")
        assert ws.recv(timeout=5) == "after the restart"
    assert arbiter.popen.poll() is None
    assert "graceful timeout" not in arbiter.output().lower()


def test_stop_closes_websockets_with_going_away_and_exits_in_time(gunicorn):
    """systemctl stop (TERM to the arbiter): websockets get 1001 at once and gunicorn exits
    cleanly before the graceful timeout would force it."""
    stack, arbiter = gunicorn
    with contextlib.ExitStack() as exit_stack:
        websockets = open_websockets(stack, 6, exit_stack)
        started = time.monotonic()
        arbiter.send_signal(signal.SIGTERM)
        assert [closed_with(ws) for ws in websockets] == [1001] * len(websockets)
    assert arbiter.popen.wait(GRACEFUL_TIMEOUT + 5) == 0
    assert time.monotonic() - started < GRACEFUL_TIMEOUT
    assert "graceful timeout" not in arbiter.output().lower()
