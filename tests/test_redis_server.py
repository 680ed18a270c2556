"""Tests of the redis-server helper the other tests rely on (tests/redis_server.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from redis_server import RedisServer, RespError, client_count, execute, pubsub_channels

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def connect(srv: RedisServer) -> socket.socket:
    """An open raw connection that redis has already registered (it answered a PING)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=5)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    return sock


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until predicate() is true; redis notices closed connections asynchronously."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_start_answers_ping_without_persistence(server: RedisServer) -> None:
    assert server.running
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert execute(server, "PING") == b"PONG"
    assert execute(server, "CONFIG", "GET", "save") == [b"save", b""]
    assert execute(server, "CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]


def test_execute_replies_and_errors(server: RedisServer) -> None:
    assert execute(server, "SET", "key", b"\x00value\r\n") == b"OK"
    assert execute(server, "GET", "key") == b"\x00value\r\n"
    assert execute(server, "GET", "missing") is None
    assert execute(server, "INCR", "counter") == 1
    with pytest.raises(RespError, match="unknown command"):
        execute(server, "NO-SUCH-COMMAND")


def test_client_count_sees_open_connections(server: RedisServer) -> None:
    assert client_count(server) == 1  # the connection that asks
    with connect(server), connect(server):
        assert client_count(server) == 3
    assert wait_for(lambda: client_count(server) == 1)


def test_pubsub_channels(server: RedisServer) -> None:
    assert pubsub_channels(server) == []
    with connect(server) as sub:
        sub.sendall(b"SUBSCRIBE news\r\nSUBSCRIBE alerts\r\n")
        assert wait_for(lambda: pubsub_channels(server) == [b"alerts", b"news"])
    assert wait_for(lambda: pubsub_channels(server) == [])


def test_restart_keeps_port_and_drops_data_and_clients(server: RedisServer) -> None:
    port = server.port
    execute(server, "SET", "key", "value")
    with connect(server) as client:
        server.restart()
        assert client.recv(64) == b""  # the old connection was closed by the old server
    assert server.port == port
    assert server.running
    assert execute(server, "GET", "key") is None
    assert client_count(server) == 1


def test_kill_then_restart(server: RedisServer) -> None:
    port = server.port
    server.kill()
    assert not server.running
    assert port_refuses(port)
    server.restart()
    assert server.port == port
    assert execute(server, "PING") == b"PONG"


def test_stop_frees_port() -> None:
    srv = RedisServer().start()
    port = srv.port
    srv.stop()
    assert not srv.running
    assert port_refuses(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing listens there any more
    srv.stop()  # stopping twice is harmless


def test_start_failure_reports_the_log() -> None:
    with pytest.raises(RuntimeError, match="Bad directive"):
        RedisServer(args=["--no-such-option", "1"]).start()
