"""The servers under test: gunicorn with ws4redis_gevent's worker, uWSGI with gevent, the peers.

Each runs in its own process group on the server CPU, serving bench/app.py (or
bench/django_app.py); its output goes to bench/.build/NAME.log, kept for a look after a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from .measure import Cpus, children

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "bench" / ".build"
START_TIMEOUT = 30.0
WORKER_CONNECTIONS = 20000


class Server:
    """A server process, pinned to the server CPU; ``workers()`` are the processes that serve."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], cpus: Cpus):
        self.name = name
        self.port = port
        self.log_path = BUILD / f"{name}.log"
        BUILD.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=cpus.server_preexec(),
                start_new_session=True,
            )

    def output(self, tail: int = 1500) -> str:
        """The end of what the server printed."""
        with open(self.log_path, errors="replace") as f:
            return f.read()[-tail:]

    def wait_until_serving(self, timeout: float = START_TIMEOUT) -> Server:
        """Wait until ``GET /`` answers 200 (the worker has booted and loaded the app)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            try:
                url = f"http://127.0.0.1:{self.port}/"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer HTTP:\n{self.output()}")
            time.sleep(0.1)

    def wait_for_output(self, marker: str, timeout: float = START_TIMEOUT) -> Server:
        """Wait until the server prints ``marker`` (the peers say when they serve)."""
        deadline = time.monotonic() + timeout
        while marker not in self.output(tail=100_000):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not say {marker!r}:\n{self.output()}")
            time.sleep(0.1)
        return self

    def workers(self) -> list[int]:
        """gunicorn's worker (the master's child), or the process itself when it has none."""
        return children(self.proc.pid) or [self.proc.pid]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGINT to the process group (a quick shutdown), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def server_env(redis_url: str, app_options: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a server: where Redis is, the app's options, the repo on the path."""
    env = {**os.environ, **extra}
    env["WS4REDIS_BENCH_REDIS"] = redis_url
    env["WS4REDIS_BENCH_OPTIONS"] = json.dumps(app_options)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_gunicorn(
    port: int, env: dict[str, str], cpus: Cpus, app: str = "bench.app:application"
) -> Server:
    cmd = [
        sys.executable, "-m", "gunicorn",
        "-k", "ws4redis_gevent.gunicorn.GeventWebSocketWorker",
        "-w", "1",
        "--worker-connections", str(WORKER_CONNECTIONS),
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        app,
    ]  # fmt: skip
    return Server("gunicorn", cmd, port, env, cpus).wait_until_serving()


def find_uwsgi() -> str | None:
    """The uwsgi binary beside this Python (a venv's), else on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("uwsgi", path=path)


def start_uwsgi(port: int, env: dict[str, str], cpus: Cpus, binary: str) -> Server:
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        somaxconn = 128
    cmd = [
        binary,
        "--http-socket", f"127.0.0.1:{port}",
        "--gevent", str(WORKER_CONNECTIONS),
        "--gevent-early-monkey-patch",
        "--module", "bench.app:application",
        "--pythonpath", str(ROOT),
        "--listen", str(min(1024, somaxconn)),  # uWSGI refuses more than somaxconn
        "--disable-logging",
        "--die-on-term",
    ]  # fmt: skip
    if sys.prefix != sys.base_prefix:
        cmd += ["--virtualenv", sys.prefix]
    return Server("uwsgi", cmd, port, env, cpus).wait_until_serving()
