"""A ``manage.py runserver`` in a subprocess, with its output collected line by line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conftest import wait_for
from redis_server import free_port
from websockets.sync.client import ClientConnection, connect


class Runserver:
    """``python manage.py runserver 127.0.0.1:PORT [args]`` run from ``project``."""

    def __init__(
        self,
        project: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.project = project
        self.python = python
        self.port = free_port()
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("RUN_MAIN", None)
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> Runserver:
        command = [self.python, "manage.py", "runserver", f"127.0.0.1:{self.port}", *self.args]
        self.proc = subprocess.Popen(
            command,
            cwd=self.project,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        return self

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float = 20.0, count: int = 1) -> list[str]:
        """Wait until ``pattern`` (a regex) matched ``count`` lines; return the matching ones."""

        def matching() -> list[str]:
            assert self.proc is not None
            if self.proc.poll() is not None and len(self.matches(pattern)) < count:
                raise AssertionError(f"runserver exited ({self.proc.returncode}):\n{self.output}")
            found = self.matches(pattern)
            return found if len(found) >= count else []

        try:
            return wait_for(matching, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- runserver output:\n{self.output}") from None

    def matches(self, pattern: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if re.search(pattern, line)]

    def wait_until_serving(self, timeout: float = 20.0, count: int = 1) -> None:
        """Wait for the banner of our runserver (``count`` times: once per (re)start)."""
        self.wait_for_output(r"^Websockets are served at ws://127\.0\.0\.1:\d+/ws/", timeout, count)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        """GET a page: (status, body), also for error statuses."""
        request = urllib.request.Request(self.http_url + path, **kwargs)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def connect(self, path: str, **kwargs: Any) -> ClientConnection:
        kwargs.setdefault("open_timeout", 10)
        return connect(f"ws://127.0.0.1:{self.port}{path}", **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the process to exit; return its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runserver did not stop on {sig!r}:\n{self.output}") from None
        finally:
            self._close_output()

    def _close_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        if self._reader is not None:
            self._reader.join(5)  # reads what is left until the pipe's end
        self.proc.stdout.close()
