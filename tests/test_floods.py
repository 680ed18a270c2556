"""Floods and slow consumers against a real server process and a real redis-server: one client
cannot freeze the worker, nor make it hold memory without bound for it.

Fairness: while clients flood (endless empty continuation frames, one-byte fragments, pings,
heartbeats, publishes), an HTTP request to the same worker and a new websocket are still
answered. How fast is a figure printed (``-s``), never asserted: the assertion is only that the
answer comes within a generous PROBE_TIMEOUT, where the worker used to freeze for good. The
flooders reconnect whenever the server closes them, so the flood goes on whatever limits the
frame parser applies inside a message.

Outbound memory: subscribers that stopped reading are closed with 1008 "too slow" once
WS4REDIS_MAX_PENDING_BYTES wait for them; the server's peak resident memory while big messages
are published to them is printed, and bounded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import struct
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import redis
from conftest import wait_for
from raw_client import CONTINUATION, PING, TEXT, encode_client_frame, handshake_request
from stacks import missing_binary, start_stack

from ws4redis_gevent.settings import DEFAULT_MAX_PENDING_BYTES

pytestmark = pytest.mark.integration

PROBE_TIMEOUT = 10.0
PROBES = 5
FLOODERS = 2
CHUNK = 64 * 1024
HEARTBEAT = "--heartbeat--"


def repeated(frame: bytes, size: int = CHUNK) -> bytes:
    """``frame`` repeated to about ``size`` bytes (the same mask each time: a client may)."""
    return frame * max(1, size // len(frame))


# What each flood sends once after the handshake, then again and again.
FLOODS = {
    "empty continuation frames": (
        encode_client_frame(TEXT, b"x", fin=False),
        repeated(encode_client_frame(CONTINUATION, b"", fin=False)),
    ),
    "one-byte fragments": (
        encode_client_frame(TEXT, b"x", fin=False),
        repeated(encode_client_frame(CONTINUATION, b"x", fin=False)),
    ),
    "pings": (b"", repeated(encode_client_frame(PING, b"are you there"))),
    "heartbeats": (b"", repeated(encode_client_frame(TEXT, HEARTBEAT.encode()))),
    "publishes": (b"", repeated(encode_client_frame(TEXT, b"m" * 1000))),
}
# The close each flood ends with, when the server sets a limit on it (None: whatever the
# frame parser's limits decide, if anything; not this test's business).
EXPECTED_CLOSE = {
    "empty continuation frames": None,
    "one-byte fragments": None,
    "pings": (1008, "ping rate exceeded"),
    "heartbeats": (1008, "heartbeat rate exceeded"),
    "publishes": (1008, "publish rate exceeded"),
}
FLOOD_PATH = "/ws/flood?subscribe-broadcast&publish-broadcast"


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM (the peak resident memory) start again from the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def parse_frames(data: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """The whole server frames at the start of ``data`` (opcode, payload), and their length."""
    frames, offset = [], 0
    while len(data) - offset >= 2:
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        head = 2
        if length == 126:
            if len(data) - offset < 4:
                break
            (length,) = struct.unpack_from("!H", data, offset + 2)
            head = 4
        elif length == 127:
            if len(data) - offset < 10:
                break
            (length,) = struct.unpack_from("!Q", data, offset + 2)
            head = 10
        if len(data) - offset < head + length:
            break
        frames.append((opcode, bytes(data[offset + head : offset + head + length])))
        offset += head + length
    return frames, offset


def close_of(payload: bytes) -> tuple[int, str]:
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


@dataclass
class Flood:
    """FLOODERS clients, each in two threads: one sends ``opening`` once, then ``chunk`` again
    and again; the other reads everything the server sends (so the server's writes never
    wait). Whenever the server ends a connection, the client opens another."""

    port: int
    opening: bytes
    chunk: bytes
    path: str = FLOOD_PATH
    sent: int = 0
    connections: int = 0
    closes: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Flood:
        for _ in range(FLOODERS):
            thread = threading.Thread(target=self._flood, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _flood(self) -> None:
        while not self._stop.is_set():
            try:
                self._one_connection()
            except OSError as exc:  # refused while the server is busy, say: try again
                self.errors.append(repr(exc))
                time.sleep(0.05)

    def _one_connection(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT) as sock:
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            sock.sendall(handshake_request(self.path, key))
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return
                head += data
            assert head.startswith(b"HTTP/1.1 101 "), head
            received = bytearray(head.partition(b"\r\n\r\n")[2])
            reader = threading.Thread(target=self._read, args=(sock, received), daemon=True)
            reader.start()
            with self._lock:
                self.connections += 1
            try:
                sock.sendall(self.opening)
                while not self._stop.is_set():
                    sock.sendall(self.chunk)
                    with self._lock:
                        self.sent += len(self.chunk)
            except OSError:
                pass  # the server ended this connection
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            reader.join(timeout=PROBE_TIMEOUT)

    def _read(self, sock: socket.socket, received: bytearray) -> None:
        # Frames are parsed as they come (a flood of pongs is many megabytes); only close
        # frames are kept.
        with contextlib.suppress(OSError):
            while data := sock.recv(1 << 16):
                received += data
                frames, parsed = parse_frames(received)
                del received[:parsed]
                closes = [close_of(payload) for opcode, payload in frames if opcode == 0x8]
                if closes:
                    with self._lock:
                        self.closes.extend(closes)

    def wait_until_flooding(self, sent: int = 4 << 20) -> None:
        """Until the flooders have sent ``sent`` bytes (so the server is busy with them)."""
        wait_for(lambda: self.sent >= sent, timeout=PROBE_TIMEOUT)


def probe(server) -> float:
    """Seconds an HTTP request to the worker takes to be answered; fails after PROBE_TIMEOUT."""
    started = time.monotonic()
    with urllib.request.urlopen(server.http_url + "/plain", timeout=PROBE_TIMEOUT) as response:
        assert response.status == 200
        response.read()
    return time.monotonic() - started


def probes(server) -> list[float]:
    return [probe(server) for _ in range(PROBES)]


def relays_a_message(server) -> float:
    """A new websocket opens and relays through Redis; the seconds that took."""
    started = time.monotonic()
    word = uuid.uuid4().hex
    with server.connect(
        f"/ws/{word}?subscribe-broadcast&publish-broadcast&echo", open_timeout=PROBE_TIMEOUT
    ) as ws:
        ws.send(word)
        assert ws.recv(timeout=PROBE_TIMEOUT) == word
    return time.monotonic() - started


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", FLOODS, ids=list(FLOODS))
def test_the_worker_answers_while_a_client_floods(start_server, kind):
    """While FLOODERS clients flood, an HTTP request and a new websocket on the same worker
    are answered (latencies printed); floods the server limits end with their close code;
    afterwards the worker serves websockets as before."""
    server = start_server(heartbeat=HEARTBEAT)
    quiet = probes(server)
    rss_before = rss_kb(server.proc.pid)
    opening, chunk = FLOODS[kind]
    with Flood(server.port, opening, chunk) as flood:
        flood.wait_until_flooding()
        during = probes(server)
        websocket_during = relays_a_message(server)
        rss_during = rss_kb(server.proc.pid)
    after = relays_a_message(server)
    print(
        f"\n{kind}: HTTP probe quiet median {ms(statistics.median(quiet))}; during the flood "
        f"median {ms(statistics.median(during))}, max {ms(max(during))}; a websocket opened "
        f"and echoed in {ms(websocket_during)} during, {ms(after)} after; flooders sent "
        f"{flood.sent / 1e6:.0f} MB over {flood.connections} connections; server RSS "
        f"{rss_before / 1024:.0f} -> {rss_during / 1024:.0f} MB; closes {set(flood.closes)}"
    )
    expected = EXPECTED_CLOSE[kind]
    if expected is not None:
        assert expected in flood.closes, flood.closes
        assert set(flood.closes) == {expected}, flood.closes
    assert server.proc.poll() is None
    wait_for(lambda: server.stats()["websockets"] == 0)


def test_limit_closes_are_counted(start_server):
    """Each close a limit decides is counted in the worker (stats.STATS: closes sent by code)."""
    server = start_server(heartbeat=HEARTBEAT, ping_burst=5, publish_burst=5)
    opening, chunk = FLOODS["pings"]
    with Flood(server.port, opening, chunk) as flood:
        wait_for(lambda: len(flood.closes) >= 3, timeout=PROBE_TIMEOUT)
    closes = server.stats()["closes_sent"]
    assert closes.get("1008", 0) >= len(flood.closes) >= 3, closes


# -- slow consumers, in bytes ------------------------------------------------------------------

STALLED = 10
BIG = 1 << 20
BIG_MESSAGES = 30


def stalled_client(port: int, path: str) -> socket.socket:
    """A websocket on a socket with a tiny receive buffer, which the test does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(PROBE_TIMEOUT)
    sock.sendall(handshake_request(path, "dGhlIHNhbXBsZSBub25jZQ=="))
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)  # one byte at a time: nothing after the 101 is consumed
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def read_until_close(sock: socket.socket) -> tuple[list[bytes], tuple[int, str] | None]:
    """The message payloads a stalled client finally reads, and the close frame after them."""
    data = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(1 << 20):
            data += chunk
    messages = []
    for opcode, payload in parse_frames(data)[0]:
        if opcode == 0x8:
            return messages, close_of(payload)
        messages.append(payload)
    return messages, None


def big_message(n: int) -> bytes:
    return b"\xfe" + struct.pack("!I", n) + os.urandom(16) * (BIG // 16)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_pending_bytes", [2 << 20, None], ids=["2 MiB", "default 8 MiB"])
def test_slow_consumers_are_bounded_in_bytes(start_server, redis_url, max_pending_bytes):
    """STALLED subscribers stop reading while BIG_MESSAGES messages of 1 MiB are published:
    each is closed with 1008 "too slow" after a gap-free prefix of its messages, the closes
    are counted, and the server's peak memory grows by far less than the 30 MiB per socket
    a count bound alone let them hold (figures printed)."""
    options = {} if max_pending_bytes is None else {"max_pending_bytes": max_pending_bytes}
    bound = max_pending_bytes or DEFAULT_MAX_PENDING_BYTES
    server = start_server(expire=0, publish_rate=None, **options)
    path = "/ws/big?subscribe-broadcast"
    stalled = [stalled_client(server.port, path) for _ in range(STALLED)]
    marker = server.connect("/ws/marker?subscribe-broadcast", legacy=True)
    try:
        wait_for(lambda: server.stats()["websockets"] == STALLED + 1)
        pid = server.proc.pid
        reset_peak_rss(pid)
        rss_before = rss_kb(pid)
        payloads = [big_message(n) for n in range(BIG_MESSAGES)]
        with redis.Redis.from_url(redis_url) as client, client.pipeline(False) as pipe:
            for payload in payloads:
                pipe.publish("broadcast:big", payload)
            pipe.publish("broadcast:marker", "done")
            pipe.execute()
        assert marker.recv(timeout=30) == "done"  # the hub has delivered everything
        peak_stalled = rss_kb(pid, "VmHWM")
        # The stalled clients read again, all at once: what the server still holds for them
        # is framed and written now.
        with ThreadPoolExecutor(STALLED) as pool:
            results = list(pool.map(read_until_close, stalled))
        peak = rss_kb(pid, "VmHWM")
        stats = server.stats()
    finally:
        marker.close()
        for sock in stalled:
            sock.close()
    growth_mb = (peak - rss_before) / 1024
    print(
        f"\n{STALLED} stalled subscribers, {BIG_MESSAGES} x 1 MiB published, "
        f"max_pending_bytes {bound >> 20} MiB: server RSS {rss_before / 1024:.0f} MB"
        f" before, peak {peak_stalled / 1024:.0f} MB while they were stalled, "
        f"{peak / 1024:.0f} MB once they read (+{growth_mb:.0f} MB, "
        f"{growth_mb / STALLED:.1f} MB per stalled socket); messages each got before its "
        f"close: {[len(messages) for messages, _ in results]}"
    )
    for messages, close in results:
        assert close == (1008, "too slow"), (len(messages), close)
        assert messages == payloads[: len(messages)], "not a gap-free prefix"
        assert len(messages) < BIG_MESSAGES
    # Counted: the websockets closed, and the messages dropped with them.
    assert stats["closes_sent"].get("1008", 0) >= STALLED, stats
    assert stats["dropped"].get("slow_consumer", 0) >= STALLED, stats
    # A count bound alone held about 29 MiB per socket here (290 MB for ten).
    assert growth_mb < STALLED * (bound + 2 * BIG) / 2**20 + 30, growth_mb


def test_a_message_bigger_than_the_byte_bound_is_delivered(start_server, redis_url):
    """The bound is on a backlog: one message alone is sent however big, to a client that
    reads, and its websocket stays open."""
    server = start_server(max_pending_bytes=64 * 1024, expire=0)
    with server.connect("/ws/huge?subscribe-broadcast", max_size=None) as ws:
        wait_for(lambda: server.stats()["channels"].get("broadcast:huge") == 1)
        payload = os.urandom(3 << 20)
        with redis.Redis.from_url(redis_url) as client:
            client.publish("broadcast:huge", payload)
            assert ws.recv(timeout=10) == payload
            client.publish("broadcast:huge", "after")
        assert ws.recv(timeout=10) == "after"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi-http"])
def test_other_servers_answer_during_an_empty_fragment_flood(redis_url, kind):
    """The same holds under gunicorn's worker and uWSGI's gevent loop (same reading code)."""
    reason = missing_binary(kind)
    if reason:
        pytest.skip(reason)
    stack = start_stack(kind, {"connection": redis_url})
    try:
        opening, chunk = FLOODS["empty continuation frames"]
        quiet = probes(stack)
        with Flood(stack.port, opening, chunk) as flood:
            flood.wait_until_flooding()
            during = probes(stack)
            websocket_during = relays_a_message(stack)
        print(
            f"\n{kind}, empty continuation frames: HTTP probe quiet median "
            f"{ms(statistics.median(quiet))}; during the flood median "
            f"{ms(statistics.median(during))}, max {ms(max(during))}; a websocket opened and "
            f"echoed in {ms(websocket_during)} during, {ms(relays_a_message(stack))} after"
        )
    finally:
        stack.stop()
