"""No leaks: 10,000 websocket connect/disconnect cycles against one server process, closed
cleanly and abruptly in turn, leave no growth in file descriptors, greenlets, hub
subscriptions or Redis channels, and the server's memory settles.

The client is a fast raw-socket one, run in several threads; the server logs at WARNING so
that its stderr pipe (read only at the end) never fills.
"""

from __future__ import annotations

import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import wait_for
from raw_client import handshake_request
from redis_server import pubsub_channels

pytestmark = pytest.mark.integration

CYCLES = 10_000
WARM_UP = 1_000
THREADS = 8
FACILITIES = 50  # channels come and go in Redis as their last websocket leaves
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CLOSE_FRAME = (
    bytes([0x88, 0x82]) + b"\x00\x00\x00\x00" + struct.pack("!H", 1000)
)  # masked, zero key
KINDS = ("clean close", "vanish (FIN)", "reset (RST)", "half a handshake", "message then FIN")
# Slack for what a server may legitimately add while busy: pooled Redis connections.
FD_SLACK = THREADS
GREENLET_SLACK = THREADS
# Memory grows while the allocator's pools fill up (about 2 MB over the first 10,000 cycles
# here, then tens of kB per 5,000). The last 5,000 cycles may add at most this: leaking any
# object of a websocket (a socket, a greenlet, a relay: kilobytes each) would add far more.
RSS_SETTLED_KB = 2048


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"closed before {marker!r}: {data!r}")
        data += chunk
    return data


def drain(sock: socket.socket) -> None:
    while sock.recv(4096):
        pass


def one_cycle(port: int, n: int) -> None:
    """Open one websocket and leave it in the ``n``-th way of KINDS."""
    kind = n % len(KINDS)
    request = handshake_request(
        f"/ws/leak{n % FACILITIES}?subscribe-broadcast&publish-broadcast", KEY
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if kind == 3:
            sock.sendall(request[: len(request) // 2])
            return
        sock.sendall(request)
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        if kind == 0:
            sock.sendall(CLOSE_FRAME)
            drain(sock)  # the server's close frame, then its end of stream
        elif kind == 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == 4:
            sock.sendall(bytes([0x81, 0x82]) + b"\x00\x00\x00\x00" + b"hi")


def run_cycles(port: int, count: int) -> float:
    """``count`` cycles on THREADS threads; returns cycles per second."""
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(lambda n: one_cycle(port, n), range(count)):
            pass
    return count / (time.monotonic() - started)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def idle_stats(server) -> dict:
    """The server's stats once every websocket is gone and every channel released."""
    return wait_for(
        lambda: (s := server.stats())["websockets"] == 0 and s["channels"] == {} and s,
        timeout=20,
    )


def test_ten_thousand_cycles_leave_nothing_behind(start_server, redis_server, capsys):
    server = start_server(env={"WS4REDIS_TEST_LOG_LEVEL": "WARNING"})
    run_cycles(server.port, WARM_UP)
    before = idle_stats(server)
    rss_before = rss_kb(server.proc.pid)

    rate_first = run_cycles(server.port, CYCLES // 2)
    idle_stats(server)
    rss_middle = rss_kb(server.proc.pid)
    rate_second = run_cycles(server.port, CYCLES // 2)
    after = idle_stats(server)
    rss_after = rss_kb(server.proc.pid)

    wait_for(lambda: pubsub_channels(redis_server) == [], timeout=10)
    with capsys.disabled():
        print(
            f"\n{CYCLES} cycles at {rate_first:.0f} and {rate_second:.0f} cycles/s; "
            f"fds {before['fds']} -> {after['fds']}, greenlets {before['greenlets']} -> "
            f"{after['greenlets']}, RSS {rss_before} -> {rss_middle} -> {rss_after} kB"
        )
    assert after["fds"] <= before["fds"] + FD_SLACK, (before, after)
    assert after["greenlets"] <= before["greenlets"] + GREENLET_SLACK, (before, after)
    assert rss_after - rss_middle <= RSS_SETTLED_KB, (rss_before, rss_middle, rss_after)
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]
