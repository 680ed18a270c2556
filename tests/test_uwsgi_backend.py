"""The uWSGI backend: picked by itself under uWSGI (or forced by WS4REDIS_BACKEND), refusing
servers that would block, and uWSGI's reloads and timeouts as websockets live through them.

The frame-level scenarios run on uWSGI in tests/test_stacks.py; why the backend takes the
socket over instead of using uWSGI's websocket API is shown in tests/test_uwsgi_native_api.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import signal
import socket
import sys
import time
import types
from collections.abc import Callable, Iterator

import pytest
import redis
from conftest import wait_for
from raw_client import TEXT, encode_client_frame, handshake_request
from stacks import (
    APP,
    Stack,
    documented_sample,
    free_port,
    make_stack,
    master_fifo,
    missing_binary,
    start_stack,
    start_uwsgi,
    uwsgi_binary,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from ws4redis_gevent.backends import load_backend, select_backend
from ws4redis_gevent.backends.gevent import GeventBackend
from ws4redis_gevent.backends.uwsgi import UwsgiBackend, gevent_loop_problem
from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.settings import Settings

UWSGI_ENVIRON = {"uwsgi.version": b"2.0.31", "SERVER_SOFTWARE": ""}
GEVENT_ENVIRON = {"SERVER_SOFTWARE": "gevent/26.9 Python/3.11"}
LISTENER = "/ws/news?subscribe-broadcast"


# -- choosing the backend (no server) ------------------------------------------------------


@pytest.fixture
def fake_uwsgi(monkeypatch) -> types.SimpleNamespace:
    """An importable ``uwsgi`` module running the gevent loop; the test process is not
    monkey-patched, so ``monkey`` is faked as patched."""
    module = types.SimpleNamespace(loop=b"gevent")
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    from gevent import monkey

    monkeypatch.setattr(monkey, "is_module_patched", lambda name: True)
    return module


def test_uwsgi_backend_only_under_uwsgi():
    """Outside uWSGI (no importable ``uwsgi``), a uWSGI-looking environ gets no backend."""
    assert select_backend(UWSGI_ENVIRON, None) is None
    assert isinstance(select_backend(GEVENT_ENVIRON, None), GeventBackend)


def test_auto_selection_picks_uwsgi_under_uwsgi(fake_uwsgi):
    assert isinstance(select_backend(UWSGI_ENVIRON, None), UwsgiBackend)
    assert isinstance(select_backend(GEVENT_ENVIRON, None), GeventBackend)


def test_forced_backend_serves_only_where_it_can(fake_uwsgi):
    """WS4REDIS_BACKEND picks one backend; it is never swapped for another."""
    assert isinstance(select_backend(UWSGI_ENVIRON, "uwsgi"), UwsgiBackend)
    assert select_backend(UWSGI_ENVIRON, "gevent") is None
    assert select_backend(GEVENT_ENVIRON, "uwsgi") is None
    dotted = "ws4redis_gevent.backends.gevent.GeventBackend"
    assert isinstance(select_backend(GEVENT_ENVIRON, dotted), GeventBackend)
    assert load_backend("uwsgi") is load_backend("uwsgi")  # one instance per process


def test_backend_setting_is_validated():
    assert Settings(backend="uwsgi").backend == "uwsgi"
    assert Settings(backend="geventwebsocket").backend == "geventwebsocket"
    assert Settings(backend="my.module.Backend").backend == "my.module.Backend"
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_BACKEND"):
        Settings(backend="uwsgi-native")


@pytest.mark.parametrize(
    ("loop", "patched", "expected"),
    [
        (None, True, "--gevent N"),
        (b"ugreen", True, "--gevent N"),
        (b"gevent", False, "--gevent-early-monkey-patch"),
        (b"gevent", True, None),
    ],
    ids=["prefork", "another loop", "not monkey-patched", "gevent, patched"],
)
def test_uwsgi_without_gevent_loop_is_refused(monkeypatch, loop, patched, expected):
    """Websockets need uWSGI's gevent loop in a monkey-patched process; the reason says how."""
    from gevent import monkey

    monkeypatch.setattr(monkey, "is_module_patched", lambda name: patched)
    problem = gevent_loop_problem(types.SimpleNamespace(loop=loop))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


# -- real uWSGI ----------------------------------------------------------------------------


@pytest.fixture
def uwsgi(redis_url) -> Iterator[Callable[..., Stack]]:
    """Start uWSGI (``mode``, extra arguments, middleware options); stopped after the test."""
    reason = missing_binary("uwsgi")
    if reason:
        pytest.skip(reason)
    started: list[Stack] = []

    def start(
        mode: str, *extra: str, gevent: bool = True, fixed_port: bool = False, **options
    ) -> Stack:
        stack = make_stack(f"uwsgi-{mode}", {"connection": redis_url, **options})
        started.append(stack)
        if fixed_port:
            stack.bind = f"127.0.0.1:{free_port()}"
        start_uwsgi(stack, mode, *extra, gevent=gevent)
        stack.wait_until_serving()
        return stack

    yield start
    for stack in started:
        stack.stop()


def assert_serves(stack: Stack) -> None:
    with stack.connect("/ws/check?subscribe-broadcast&publish-broadcast&echo") as ws:
        ws.send("served")
        assert ws.recv(timeout=5) == "served"


def test_documented_uwsgi_command_serves(redis_url):
    """docs/deployment.rst's uWSGI command line, run as written but for the address and the
    module: websockets (picked up by the uWSGI backend) and plain HTTP through its router."""
    reason = missing_binary("uwsgi")
    if reason:
        pytest.skip(reason)
    argv = shlex.split(documented_sample("tested-deployment", "uwsgi-command").replace("\\\n", " "))
    assert argv[0] == "uwsgi"
    argv[0] = str(uwsgi_binary())
    port = free_port()
    argv[argv.index("--http") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--module") + 1] = APP
    stack = make_stack("uwsgi-documented", {"connection": redis_url})
    try:
        stack.spawn("uwsgi", argv)
        stack.port = port
        stack.wait_until_serving()
        assert_serves(stack)
        assert stack.get("/plain") == (200, b"app saw GET /plain")
    finally:
        stack.stop()


def test_backend_setting_under_uwsgi(uwsgi, start_server):
    """Under uWSGI, WS4REDIS_BACKEND="uwsgi" serves and "gevent" is refused with 501; under
    gevent's pywsgi, "uwsgi" is refused."""
    assert_serves(uwsgi("http-socket", backend="uwsgi"))
    forced_gevent = uwsgi("http-socket", backend="gevent")
    with pytest.raises(InvalidStatus) as refused:
        forced_gevent.connect(LISTENER)
    assert refused.value.response.status_code == 501
    with pytest.raises(InvalidStatus) as refused:
        start_server(backend="uwsgi").connect(LISTENER)
    assert refused.value.response.status_code == 501


def test_uwsgi_without_gevent_answers_501_and_says_why(uwsgi):
    """A prefork uWSGI cannot hold websockets: the handshake is refused before the upgrade, the
    log tells how to start uWSGI, and plain HTTP still works."""
    stack = uwsgi("http-socket", gevent=False)
    with pytest.raises(InvalidStatus) as refused:
        stack.connect(LISTENER)
    assert refused.value.response.status_code == 501
    assert "--gevent N --gevent-early-monkey-patch" in stack.logs()
    assert stack.get("/plain") == (200, b"app saw GET /plain")


def going_away(ws) -> None:
    """The websocket receives a close frame with 1001 (going away)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    received = closed.value.rcvd
    assert received is not None, "the connection dropped without a close frame"
    assert received.code == 1001


def test_graceful_reload_closes_websockets_with_going_away(uwsgi):
    """A graceful reload (FIFO ``r``, like SIGHUP) closes every websocket with 1001 at once,
    and the reloaded worker serves new ones."""
    stack = uwsgi("http-socket", fixed_port=True)
    with stack.connect(LISTENER) as first, stack.connect(LISTENER) as second:
        started = time.monotonic()
        master_fifo(stack, "r")
        going_away(first)
        going_away(second)
        assert time.monotonic() - started < 5  # not the 10 s reload mercy
    wait_for(lambda: stack.logs().count("spawned uWSGI worker 1 ") >= 2, timeout=20)
    stack.wait_until_serving()
    assert_serves(stack)


def test_graceful_shutdown_closes_websockets_with_going_away(uwsgi):
    """A graceful shutdown (FIFO ``q``) closes websockets with 1001; uWSGI then exits."""
    stack = uwsgi("http-socket")
    with stack.connect(LISTENER) as ws:
        master_fifo(stack, "q")
        going_away(ws)
    assert stack.processes[0].popen.wait(15) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_uwsgi_sigterm_closes_websockets_with_going_away(uwsgi, signum):
    """With --die-on-term, SIGTERM (systemd's stop) and SIGINT stop the worker's gevent loop at
    once; the backend's ``uwsgi.atexit`` hook, which uWSGI calls before the worker exits,
    closes every websocket with 1001 (they used to drop with 1006). uWSGI then exits."""
    stack = uwsgi("http-socket")
    with stack.connect(LISTENER) as first, stack.connect(LISTENER) as second:
        stack.processes[0].send_signal(signum)
        going_away(first)
        going_away(second)
    assert stack.processes[0].popen.wait(15) is not None
    assert "Traceback" not in stack.logs()


def test_http_router_needs_http_websockets(uwsgi, redis_url):
    """Without --http-websockets, uWSGI's router passes the 101 and the server's frames, but
    not the client's: the client's message is never echoed (the option is required)."""
    stack = uwsgi("http-without-websockets")
    path = "/ws/news?subscribe-broadcast&publish-broadcast&echo"
    # Nor does the client's close frame get through: don't wait for the answer.
    with stack.connect(path, close_timeout=0.2) as ws:
        with redis.Redis.from_url(redis_url) as client:
            client.publish("broadcast:news", "server to client")
        assert ws.recv(timeout=5) == "server to client"
        ws.send("client to server")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2)


def test_uwsgi_http_router_reload_drops_websockets(uwsgi):
    """uWSGI limitation: a reload restarts the ``--http`` router, which holds the clients'
    connections, before the workers: websockets drop without a close frame (1006)."""
    stack = uwsgi("http", fixed_port=True)
    with stack.connect(LISTENER) as ws:
        master_fifo(stack, "r")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is None


@pytest.mark.parametrize("pinged", [True, False], ids=["pings every 0.3 s", "no pings"])
def test_http_router_timeout_is_kept_at_bay_by_pings(uwsgi, redis_url, pinged):
    """The http router cuts a connection silent for ``--http-timeout`` (1 s here): protocol
    pings keep a websocket open past it; without them it is cut."""
    intervals = 0.3 if pinged else 30
    stack = uwsgi("http", "--http-timeout", "1", ping_interval=intervals, ping_timeout=intervals)
    with stack.connect(LISTENER) as ws:
        if not pinged:
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=10)
            return
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2.5)
        with redis.Redis.from_url(redis_url) as client:
            client.publish("broadcast:news", "after 2.5 s")
        assert ws.recv(timeout=5) == "after 2.5 s"


@pytest.mark.parametrize(
    ("kind", "kept"),
    [("gevent", True), ("uwsgi-http-socket", False), ("uwsgi-http", False)],
)
def test_frame_sent_before_the_101_is_lost_under_uwsgi(redis_url, kind, kept):
    """uWSGI limitation: a frame a client sends right behind its handshake, without waiting for
    the 101 (RFC 6455 section 4.1 forbids it), is consumed by uWSGI with the request and never
    reaches the backend; gevent's pywsgi keeps it in the buffer the backend reads. The
    connection goes on working in both cases."""
    reason = missing_binary(kind)
    if reason:
        pytest.skip(reason)
    stack = start_stack(kind, {"connection": redis_url})
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        path = "/ws/early?subscribe-broadcast&publish-broadcast&echo"
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
            sock.sendall(handshake_request(path, key) + encode_client_frame(TEXT, b"early"))
            reader = sock.makefile("rb")
            try:
                status = reader.readline()
            except TimeoutError:
                raise AssertionError(stack.logs()) from None
            assert status.startswith(b"HTTP/1.1 101")
            while reader.readline() != b"\r\n":
                pass
            sock.sendall(encode_client_frame(TEXT, b"after the 101"))
            echoed = []
            while b"after the 101" not in echoed:
                head = reader.read(2)
                assert head[0] & 0x0F == TEXT and head[1] < 126, head
                echoed.append(reader.read(head[1]))
            reader.close()
        assert echoed == ([b"early"] if kept else []) + [b"after the 101"]
    finally:
        stack.stop()


def test_open_websockets_do_not_hold_async_cores(uwsgi, redis_url):
    """A websocket whose handshake is done is parked on the event loop and its request ends:
    uWSGI's async core is free again, so a worker with ``--gevent 4`` holds ten websockets
    (and still answers HTTP), each receiving what is published."""
    stack = uwsgi("http-socket", "--gevent", "4")
    with contextlib.ExitStack() as opened:
        sockets = [
            opened.enter_context(stack.connect("/ws/cores?subscribe-broadcast", open_timeout=5))
            for _ in range(10)
        ]
        assert stack.get("/plain", timeout=5) == (200, b"app saw GET /plain")
        assert redis.Redis.from_url(redis_url).publish("broadcast:cores", "to all ten") == 1
        for ws in sockets:
            assert ws.recv(timeout=5) == "to all ten"


def test_documented_gc_freeze_under_uwsgi(redis_url, tmp_path):
    """docs/deployment.rst's lines for the end of the WSGI module, under uWSGI: the worker
    serves with the loaded application frozen for the garbage collector, websockets work."""
    reason = missing_binary("uwsgi")
    if reason:
        pytest.skip(reason)
    module = tmp_path / "frozen_wsgi.py"
    sample = documented_sample("tested-deployment", "uwsgi-gc-freeze")
    module.write_text("from gunicorn_app import app as application\n\n" + sample)
    stack = make_stack("uwsgi-frozen", {"connection": redis_url})
    try:
        start_uwsgi(stack, "http-socket", "--pythonpath", str(tmp_path), app="frozen_wsgi")
        stack.wait_until_serving()
        assert stack.stats()["gc_frozen"] > 10_000
        assert_serves(stack)
    finally:
        stack.stop()
