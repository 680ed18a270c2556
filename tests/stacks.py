"""Real deployment stacks for the integration tests: server processes started, awaited, stopped.

A stack is one or more real processes (gevent's pywsgi, gunicorn with GeventWebSocketWorker,
uWSGI with gevent in ``--http`` or ``--http-socket`` mode, nginx in front of any of them) serving
``tests/gunicorn_app.py`` (``serve.build_app``: the middleware around a plain app, plus
``/_stats``). ``Stack`` has the interface of conftest's ``ServerProcess``: ``port``,
``http_url``, ``ws_url(path)``, ``connect(path)``, ``stats()``, ``stop()``.

Every process writes its output to a log file in the stack's own temporary directory (a pipe
nobody reads would block the server); ``Stack.logs()`` returns them for failure messages.
nginx's configuration comes from the code blocks of ``docs/deployment.rst`` (see
``documented_nginx_config``), so the documented configuration is the tested one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.rst"
APP = "gunicorn_app:app"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
GEVENT_CORES = 100
NGINX_UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")

# The stacks the backend-level scenarios run on.
DIRECT_STACKS = (
    "gevent",
    "gunicorn",
    "uwsgi-http",
    "uwsgi-http-socket",
    "geventwebsocket",
    "gunicorn-geventwebsocket",
)
# gevent-websocket's gunicorn worker (it upgrades before the application runs).
GEVENTWEBSOCKET_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
# Stacks whose server sends the 101 before the application runs, so before the websocket's
# subscriptions exist (docs/deployment.rst, "gevent-websocket"): ``Stack.connect`` waits for
# the answer to a ping, which only the relay gives, once subscribed.
UPGRADES_EARLY = ("geventwebsocket", "gunicorn-geventwebsocket")
NGINX_STACKS = ("nginx-gunicorn", "nginx-uwsgi-http", "nginx-uwsgi-pass")


class StackError(RuntimeError):
    """A stack did not start; the message holds its logs."""


def uwsgi_binary() -> str | None:
    """The uwsgi executable beside this Python (installed by the ``test`` extra), or on PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    return str(beside) if beside.exists() else shutil.which("uwsgi")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def missing_binary(kind: str) -> str | None:
    """Why the stack ``kind`` cannot run here, or None when it can."""
    if "uwsgi" in kind and uwsgi_binary() is None:
        return "uWSGI is not installed (pip install uWSGI, part of the test extra)"
    if kind.startswith("nginx") and (nginx_binary() is None or not NGINX_UWSGI_PARAMS.exists()):
        return "nginx is not installed (apt-get install nginx; dev.py test does it as root)"
    return None


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for servers that cannot bind port 0 and say so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """One server process, its output going to ``log``."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                cmd,
                env=env,
                cwd=TESTS,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the output; StackError if the process dies first."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.popen.poll() is not None:
                raise StackError(f"{self.name} exited ({self.popen.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise StackError(f"{self.name}: no {pattern!r} in {timeout}s:\n{self.output()}")
            time.sleep(0.02)

    def send_signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` to the process and wait; then kill what is left of its group (uWSGI's
        workers and router, gunicorn's workers). The default, SIGKILL, is for teardown: tests of
        graceful stops send their signal themselves first."""
        self.send_signal(signum)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class Stack:
    """A running stack: a websocket server reached at ``port``, made of ``processes``."""

    def __init__(self, kind: str, options: dict[str, Any], workdir: Path) -> None:
        self.kind = kind
        self.options = options
        self.workdir = workdir
        self.processes: list[Process] = []
        self.port = 0
        self.socket_path: Path | None = None  # a backend listening on a unix socket
        # Where uWSGI binds in TCP modes. Port 0 (chosen by the kernel) does not survive a
        # reload: tests that reload give a free port instead.
        self.bind = "127.0.0.1:0"
        self.ssl_context: ssl.SSLContext | None = None  # set when nginx terminates TLS

    # -- the ServerProcess interface -------------------------------------------------------

    @property
    def http_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def connect(self, path: str, **kwargs: Any) -> ClientConnection:
        kwargs.setdefault("open_timeout", 10)
        if self.ssl_context is not None:
            kwargs.setdefault("ssl", self.ssl_context)
        ws = connect(self.ws_url(path), **kwargs)
        if self.kind not in UPGRADES_EARLY:
            return ws
        ws.__enter__()  # (the caller's ``with`` enters it again, which is harmless)
        if not ws.ping().wait(10):
            ws.close()
            raise StackError(f"no pong from the relay:\n{self.logs()}")
        return ws

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        """An HTTP GET through the stack: (status, body)."""
        url = self.http_url + path
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self.ssl_context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/_stats")
        assert status == 200, (status, body)
        return json.loads(body)

    def stop(self) -> str:
        """Stop every process (front first); returns their logs."""
        for process in reversed(self.processes):
            process.stop()
        logs = self.logs()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return logs

    # -- helpers ---------------------------------------------------------------------------

    def spawn(self, name: str, cmd: list[str]) -> Process:
        env = {
            **os.environ,
            "WS4REDIS_TEST_OPTIONS": json.dumps(self.options),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
            "PYTHONUNBUFFERED": "1",
        }
        process = Process(name, cmd, self.workdir / f"{name}.log", env)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ({' '.join(p.cmd[:3])}...)\n{p.output()}" for p in self.processes
        )

    def wait_until_serving(self, timeout: float = START_TIMEOUT) -> None:
        """Until ``/_stats`` answers through the whole stack (workers booted, app loaded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.get("/_stats", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise StackError(f"{process.name} exited:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise StackError(f"{self.kind} not serving after {timeout}s:\n{self.logs()}")
            time.sleep(0.05)


# -- launchers -----------------------------------------------------------------------------


def start_gevent(stack: Stack, handler: str = "ws4redis") -> None:
    """gevent's pywsgi (tests/serve.py) on port 0, with ws4redis_gevent's handler or
    gevent-websocket's (``handler="geventwebsocket"``)."""
    cmd = [sys.executable, str(TESTS / "serve.py"), "--handler", handler]
    process = stack.spawn("gevent", cmd)
    stack.port = int(process.wait_for_output(r"LISTENING (\d+)").group(1))


def start_gunicorn(
    stack: Stack,
    bind: str = "127.0.0.1:0",
    graceful_timeout: float = 5,
    argv: list[str] | None = None,
    worker: str = "ws4redis_gevent.gunicorn.GeventWebSocketWorker",
) -> Process:
    """gunicorn with one GeventWebSocketWorker on ``bind`` (a TCP address, or ``unix:PATH``), or
    the gunicorn command line ``argv``; returns once a worker boots."""
    if argv is None:
        argv = [
            sys.executable, "-m", "gunicorn",
            "-k", worker,
            "--bind", bind, "--workers", "1", "--graceful-timeout", str(graceful_timeout),
            APP,
        ]  # fmt: skip
    process = stack.spawn("gunicorn", [*argv, "--log-level", "info"])
    match = process.wait_for_output(r"Listening at: http://127\.0\.0\.1:(\d+)|Listening at: unix:")
    if match.group(1):
        stack.port = int(match.group(1))
    process.wait_for_output(r"Booting worker with pid")
    return process


def systemd_directives(unit: str) -> dict[str, str]:
    """The ``Key=value`` lines of a systemd unit, continuation lines (``\\``) joined."""
    joined = re.sub(r"\\\n\s*", " ", unit)
    return dict(
        line.split("=", 1) for line in joined.splitlines() if "=" in line and line[0].isalpha()
    )


UWSGI_MODES: dict[str, Callable[[Stack], list[str]]] = {
    # The http router (a separate process) in front of the worker, websockets switched on.
    "http": lambda stack: ["--shared-socket", stack.bind, "--http", "=0", "--http-websockets"],
    # The same without --http-websockets (to show what that option does).
    "http-without-websockets": lambda stack: ["--shared-socket", stack.bind, "--http", "=0"],
    # The worker speaks HTTP itself.
    "http-socket": lambda stack: ["--http-socket", stack.bind],
    # HTTP on a unix socket (nginx proxy_pass) and the uwsgi protocol (nginx uwsgi_pass).
    "http-unix": lambda stack: ["--http-socket", str(stack.socket_path)],
    "uwsgi-unix": lambda stack: ["--socket", str(stack.socket_path)],
}


def uwsgi_command(
    stack: Stack, mode: str, *extra: str, gevent: bool = True, app: str = APP, name: str = "uwsgi"
) -> list[str]:
    """uWSGI's command line for one worker in ``mode``, stoppable by SIGTERM (--die-on-term)
    and controllable through its master FIFO (see ``master_fifo``)."""
    binary = uwsgi_binary()
    assert binary is not None, "uWSGI is not installed"
    loop = ["--gevent", str(GEVENT_CORES), "--gevent-early-monkey-patch"] if gevent else []
    return [
        binary, *UWSGI_MODES[mode](stack), *loop,
        "--master", "--processes", "1", "--module", app, "--need-app", "--die-on-term",
        "--master-fifo", str(stack.workdir / f"{name}.fifo"), "--worker-reload-mercy", "10",
        *extra,
    ]  # fmt: skip


def start_uwsgi(
    stack: Stack, mode: str, *extra: str, gevent: bool = True, app: str = APP, name: str = "uwsgi"
) -> Process:
    """uWSGI serving ``app`` with one worker, in ``mode`` (a key of UWSGI_MODES), with its
    gevent loop unless ``gevent`` is false; TCP modes bind ``stack.bind``, unix modes
    ``stack.socket_path`` (``NAME.sock`` in the stack's directory). ``name`` names its log,
    socket and master FIFO, for stacks of several instances."""
    if mode.endswith("-unix"):
        stack.socket_path = stack.workdir / f"{name}.sock"
    command = uwsgi_command(stack, mode, *extra, gevent=gevent, app=app, name=name)
    process = stack.spawn(name, command)
    if "--shared-socket" in command:
        pattern = r"shared socket 0 bound to TCP address 127\.0\.0\.1:(\d+)"
    elif mode == "http-socket":
        pattern = r"socket 0 bound to TCP address 127\.0\.0\.1:(\d+)"
    else:
        pattern = r"socket 0 bound to UNIX address"
    match = process.wait_for_output(pattern)
    if match.groups():
        stack.port = int(match.group(1))
    process.wait_for_output(r"spawned uWSGI worker 1 ")
    return process


def master_fifo(stack: Stack, command: str, name: str = "uwsgi") -> None:
    """Write a command to uWSGI's master FIFO: ``r`` graceful reload, ``q`` graceful shutdown."""
    with open(stack.workdir / f"{name}.fifo", "w") as fifo:
        fifo.write(command)


# -- nginx ---------------------------------------------------------------------------------


def documented_sample(tag: str, name: str, doc: Path | None = None) -> str:
    """The code block of ``doc`` (docs/deployment.rst by default) marked ``.. TAG: NAME``, TAG
    being e.g. ``tested-deployment`` or ``tested-nginx-config`` (the convention of
    tests/test_readme_samples.py, which checks that every sample is run by some test)."""
    text = (doc or DEPLOYMENT_DOC).read_text(encoding="utf-8")
    marker = f".. {tag}: {name}\n"
    assert text.count(marker) == 1, f"{marker.strip()!r}: {text.count(marker)} in the doc"
    block = text.split(marker, 1)[1].split(".. code-block::", 1)[1].split("\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def documented_nginx_config(name: str) -> str:
    return documented_sample("tested-nginx-config", name)


def nginx_config(
    stack: Stack,
    site: str,
    port: int,
    upstreams: dict[str, str],
    read_timeout: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> str:
    """A whole nginx.conf for the tests around ``site`` (a documented configuration).

    The documented addresses are replaced: ``listen`` by 127.0.0.1:``port``, each ``server
    ADDRESS;`` of an upstream by ``upstreams[ADDRESS]``, the certificate paths by ``tls``, and
    the read timeouts by ``read_timeout`` when given.
    """
    temp = stack.workdir
    # As root, nginx's workers would run as nobody and could not enter our temporary directory.
    user = "user root root;" if os.geteuid() == 0 else ""
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    for documented, actual in upstreams.items():
        assert f"server {documented};" in site, documented
        site = site.replace(f"server {documented};", f"server {actual};")
    if tls is not None:
        site = re.sub(r"ssl_certificate \S+;", f"ssl_certificate {tls[0]};", site)
        site = re.sub(r"ssl_certificate_key \S+;", f"ssl_certificate_key {tls[1]};", site)
    if read_timeout is not None:
        site = re.sub(r"(proxy|uwsgi)_read_timeout \S+;", rf"\1_read_timeout {read_timeout};", site)
    return f"""{user}
worker_processes 1;
error_log {temp}/nginx-error.log info;
pid {temp}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    access_log {temp}/nginx-access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{textwrap.indent(site, "    ")}
}}
"""


def start_nginx(
    stack: Stack,
    doc_block: str,
    upstreams: dict[str, str],
    read_timeout: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """nginx with the documented configuration ``doc_block``, in front of ``upstreams``.

    nginx cannot report a port it chose, so the port is picked free beforehand; when another
    process takes it in between, nginx fails to bind and is started again on another port.
    """
    binary = nginx_binary()
    assert binary is not None, "nginx is not installed"
    # Relative includes (``include uwsgi_params;``) resolve next to our nginx.conf.
    shutil.copy(NGINX_UWSGI_PARAMS, stack.workdir / "uwsgi_params")
    config = stack.workdir / "nginx.conf"
    site = documented_nginx_config(doc_block)
    for _attempt in range(5):
        port = free_port()
        config.write_text(nginx_config(stack, site, port, upstreams, read_timeout, tls))
        command = [binary, "-c", str(config), "-p", str(stack.workdir), "-g", "daemon off;"]
        process = stack.spawn("nginx", command)
        if _accepts_connections(process, port):
            stack.port = port
            return
        if "Address already in use" not in process.output():
            raise StackError(f"nginx did not start:\n{stack.logs()}")
        stack.processes.remove(process)
        process.stop()
    raise StackError("nginx: no free port after 5 attempts")


def _accepts_connections(process: Process, port: int, timeout: float = 10) -> bool:
    """Wait until ``port`` accepts connections (True) or ``process`` exits (False)."""
    deadline = time.monotonic() + timeout
    while process.popen.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                raise StackError(f"{process.name}: port {port} closed after {timeout}s") from None
            time.sleep(0.02)
    return False


# -- the stacks by name --------------------------------------------------------------------


def make_stack(kind: str, options: dict[str, Any]) -> Stack:
    """A stack with its own temporary directory and nothing started yet."""
    return Stack(kind, options, Path(tempfile.mkdtemp(prefix=f"ws4redis-{kind}-")))


def start_stack(kind: str, options: dict[str, Any], read_timeout: str | None = None) -> Stack:
    """Start the stack ``kind`` (see DIRECT_STACKS and NGINX_STACKS) serving ``options``.

    ``read_timeout`` replaces nginx's documented proxy_read_timeout / uwsgi_read_timeout.
    """
    stack = make_stack(kind, options)
    try:
        _launch(stack, kind, read_timeout)
        stack.wait_until_serving()
    except BaseException:
        stack.stop()
        raise
    return stack


def _launch(stack: Stack, kind: str, read_timeout: str | None) -> None:
    if kind == "gevent":
        start_gevent(stack)
    elif kind == "gunicorn":
        start_gunicorn(stack)
    elif kind == "geventwebsocket":
        start_gevent(stack, handler="geventwebsocket")
    elif kind == "gunicorn-geventwebsocket":
        start_gunicorn(stack, worker=GEVENTWEBSOCKET_WORKER)
    elif kind == "uwsgi-http":
        start_uwsgi(stack, "http")
    elif kind == "uwsgi-http-socket":
        start_uwsgi(stack, "http-socket")
    elif kind == "nginx-gunicorn":
        sock = stack.workdir / "gunicorn.sock"
        start_gunicorn(stack, bind=f"unix:{sock}")
        start_nginx(stack, "proxy", {"127.0.0.1:8000": f"unix:{sock}"}, read_timeout)
    elif kind == "nginx-uwsgi-http":
        start_uwsgi(stack, "http-unix")
        start_nginx(stack, "proxy", {"127.0.0.1:8000": f"unix:{stack.socket_path}"}, read_timeout)
    elif kind == "nginx-uwsgi-pass":
        start_uwsgi(stack, "uwsgi-unix")
        both = {
            "unix:/run/uwsgi/django.sock": f"unix:{stack.socket_path}",
            "unix:/run/uwsgi/websockets.sock": f"unix:{stack.socket_path}",
        }
        start_nginx(stack, "uwsgi", both, read_timeout)
    else:
        raise ValueError(f"unknown stack {kind!r}")
