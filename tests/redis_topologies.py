"""Real Redis topologies for the scaling tests: Sentinel (master, replica, three sentinels) and
Cluster (three masters, optionally with one replica each), all on loopback, in temporary dirs.

Sentinel and sharded pub/sub need Redis 7: ``find_redis7()`` looks for a 7.x ``redis-server``
($WS4REDIS_TEST_REDIS7_SERVER, $WS4REDIS_TEST_REDIS_SERVER, PATH, /usr/bin) and the fixtures skip
with the reason when there is none (``dev.py test`` installs Debian's ``redis-server`` as root).
Like ``redis_server.py``, this talks RESP over plain sockets, never through redis-py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis_server import HOST, START_TIMEOUT, RedisServer, RespError, execute, free_port

ENV_VAR = "WS4REDIS_TEST_REDIS7_SERVER"
SERVICE = "mymaster"
SLOTS = 16384
FAST_SYNC = ["--repl-diskless-sync-delay", "0"]  # replicas sync at once, not after 5 s


def redis_version(binary: str) -> tuple[int, ...]:
    """The version of a redis-server binary, (0,) when it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def find_redis7() -> str | None:
    """A redis-server of version 7 or later, or None."""
    candidates = [
        os.environ.get(ENV_VAR),
        os.environ.get("WS4REDIS_TEST_REDIS_SERVER"),
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
    ]
    for binary in candidates:
        if binary and os.access(binary, os.X_OK) and redis_version(binary) >= (7,):
            return binary
    return None


def require_redis7() -> str:
    binary = find_redis7()
    if binary is None:
        pytest.skip(
            "Sentinel/Cluster tests need redis-server >= 7 (sharded pub/sub): "
            f"apt-get install redis-server, or set {ENV_VAR}"
        )
    return binary


def info(server: Any, section: str) -> dict[str, str]:
    """INFO ``section`` as a dict of strings."""
    text = execute(server, "INFO", section).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def poll(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until ``predicate`` is true (errors count as false); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, RespError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout}s")
        time.sleep(0.05)


# --- Sentinel -----------------------------------------------------------------------------------


class SentinelProcess:
    """``redis-server sentinel.conf --sentinel`` on a free port, watching SERVICE."""

    def __init__(self, binary: str, master_port: int, quorum: int) -> None:
        self.binary = binary
        self.host = HOST
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="ws4redis-test-sentinel-")
        self.conf = os.path.join(self._dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"port {self.port}\nbind {HOST}\ndir {self._dir}\n"
                f"sentinel monitor {SERVICE} {HOST} {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} 500\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        with open(os.path.join(self._dir, "sentinel.log"), "wb") as log:
            self._proc = subprocess.Popen(
                [binary, self.conf, "--sentinel"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        poll(lambda: execute(self, "PING", timeout=1) == b"PONG", START_TIMEOUT, "sentinel up")

    @property
    def log(self) -> str:
        with open(os.path.join(self._dir, "sentinel.log"), errors="replace") as f:
            return f.read()

    def master(self) -> tuple[str, int] | None:
        reply = execute(self, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return (reply[0].decode(), int(reply[1])) if reply else None

    def state(self) -> dict[str, str]:
        reply = execute(self, "SENTINEL", "MASTER", SERVICE)
        return {k.decode(): v.decode() for k, v in zip(reply[::2], reply[1::2], strict=True)}

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


class SentinelTopology:
    """One master, one replica, three sentinels (quorum 2); ``failover()`` kills the master."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.servers: list[RedisServer] = []
        self.sentinels: list[SentinelProcess] = []

    def start(self) -> SentinelTopology:
        master = RedisServer(self.binary, FAST_SYNC).start()
        self.servers.append(master)
        replica = RedisServer(self.binary, [*FAST_SYNC, "--replicaof", HOST, str(master.port)])
        replica.start()
        self.servers.append(replica)
        poll(lambda: info(replica, "replication")["master_link_status"] == "up", 10, "replica")
        for _ in range(3):
            self.sentinels.append(SentinelProcess(self.binary, master.port, quorum=2))
        # Ready when every sentinel knows the replica and the two other sentinels.
        for sentinel in self.sentinels:
            poll(
                lambda s=sentinel: int(s.state()["num-other-sentinels"]) == 2
                and int(s.state()["num-slaves"]) >= 1,
                15,
                "sentinels discovering each other",
            )
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.sentinels]

    def master(self) -> RedisServer:
        """The server the sentinels currently name as master."""
        _, port = self.sentinels[0].master() or (None, 0)
        return next(server for server in self.servers if server.port == port)

    def connection(self, **options: Any) -> dict[str, Any]:
        """WS4REDIS_CONNECTION for this topology (JSON-friendly)."""
        return {"sentinels": [list(a) for a in self.addresses], "service_name": SERVICE, **options}

    def url(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.addresses)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def kill_master(self) -> RedisServer:
        """SIGKILL the master (a crash); return the killed server."""
        master = self.master()
        master.kill()
        return master

    def wait_for_new_master(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Wait until every sentinel names another master and that master accepts writes."""

        def promoted() -> bool:
            ports = {s.master()[1] for s in self.sentinels}  # type: ignore[index]
            if ports == {old.port} or len(ports) != 1:
                return False
            new = self.master()
            return info(new, "replication")["role"] == "master"

        poll(promoted, timeout, "sentinel failover")
        return self.master()

    def flush(self) -> None:
        execute(self.master(), "FLUSHALL")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()


# --- Cluster ------------------------------------------------------------------------------------


class ClusterNode(RedisServer):
    """A redis-server with cluster mode on; the bus port is chosen (port + 10000 may not fit)."""

    def __init__(self, binary: str, args: tuple[str, ...] = ()) -> None:
        self.bus_port = free_port()
        super().__init__(
            binary,
            [
                *args,
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000",
                "--cluster-port", str(self.bus_port),
                "--cluster-replica-validity-factor", "0",
                *FAST_SYNC,
            ],
        )  # fmt: skip

    @property
    def node_id(self) -> str:
        return execute(self, "CLUSTER", "MYID").decode()

    def cluster_info(self) -> dict[str, str]:
        text = execute(self, "CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class ClusterTopology:
    """``masters`` masters sharing the 16384 slots, each with ``replicas`` replicas."""

    def __init__(
        self, binary: str, masters: int = 3, replicas: int = 0, args: tuple[str, ...] = ()
    ) -> None:
        self.binary = binary
        self.args = args  # for every node
        self.masters: list[ClusterNode] = []
        self.replicas: list[ClusterNode] = []
        self._shape = (masters, replicas)

    @property
    def nodes(self) -> list[ClusterNode]:
        return self.masters + self.replicas

    def start(self) -> ClusterTopology:
        count, per_master = self._shape
        self.masters = [ClusterNode(self.binary, self.args).start() for _ in range(count)]
        self.replicas = [
            ClusterNode(self.binary, self.args).start() for _ in range(count * per_master)
        ]
        bounds = [SLOTS * i // count for i in range(count + 1)]
        for node, start, end in zip(self.masters, bounds, bounds[1:], strict=False):
            execute(node, "CLUSTER", "ADDSLOTSRANGE", start, end - 1)
        first = self.masters[0]
        for node in self.nodes[1:]:
            execute(node, "CLUSTER", "MEET", HOST, first.port, first.bus_port)
        total = len(self.nodes)
        for node in self.nodes:
            poll(
                lambda n=node: len(execute(n, "CLUSTER", "NODES").splitlines()) == total,
                15,
                "cluster nodes meeting",
            )
        for index, replica in enumerate(self.replicas):
            master = self.masters[index // per_master]
            execute(replica, "CLUSTER", "REPLICATE", master.node_id)
        for replica in self.replicas:
            poll(lambda r=replica: info(r, "replication")["master_link_status"] == "up", 15, "sync")
        for node in self.nodes:
            poll(lambda n=node: n.cluster_info()["cluster_state"] == "ok", 15, "cluster_state ok")
        return self

    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.masters)

    def connection(self, **options: Any) -> dict[str, Any]:
        """WS4REDIS_CONNECTION for this cluster (JSON-friendly)."""
        nodes = [[n.host, n.port] for n in self.masters]
        return {"cluster": True, "startup_nodes": nodes, **options}

    def node_for_slot(self, slot: int) -> ClusterNode:
        """The live master serving ``slot`` (as the cluster sees it now)."""
        for node in self.nodes:
            if not node.running:
                continue
            for entry in execute(node, "CLUSTER", "SLOTS"):
                if entry[0] <= slot <= entry[1]:
                    port = entry[2][1]
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(slot)

    def flush(self) -> None:
        for node in self.masters:
            if node.running and info(node, "replication")["role"] == "master":
                execute(node, "FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key`` (CRC16/XMODEM mod 16384, with hash tags)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % SLOTS


# --- publishing through a failover ---------------------------------------------------------------


@dataclass
class Attempt:
    number: int
    at: float
    receivers: int | None  # None: publish_message raised (the publisher knew it failed)


@dataclass
class PublishingLoop:
    """Publishes 0, 1, 2... about every 10 ms in a thread, recording each attempt and error."""

    publisher: Any  # a RedisPublisher
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    idle: threading.Event = field(default_factory=threading.Event)  # it saw ``paused``
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stopped.is_set():
            if self.paused.is_set():
                self.idle.set()
                self.stopped.wait(0.005)
                continue
            self.idle.clear()
            receivers: int | None
            try:
                receivers = self.publisher.publish_message(str(number))
            except Exception as exc:  # the tests check which errors they were
                receivers = None
                self.errors.append(exc)
            self.attempts.append(Attempt(number, time.monotonic(), receivers))
            number += 1
            self.stopped.wait(0.01)

    def pause(self) -> None:
        """Stop publishing; returns once no publish is in flight."""
        self.paused.set()
        poll(self.idle.is_set, 10, "publishing paused")

    def resume(self) -> None:
        self.paused.clear()

    def delivered_after(self, moment: float) -> int:
        return sum(1 for a in self.attempts if a.at > moment and a.receivers)


@pytest.fixture
def publishing() -> Iterator[Callable[[PublishingLoop], PublishingLoop]]:
    """Start PublishingLoops in threads; they are stopped at the end of the test."""
    started: list[tuple[PublishingLoop, threading.Thread]] = []

    def start(loop: PublishingLoop) -> PublishingLoop:
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        started.append((loop, thread))
        return loop

    yield start
    for loop, _ in started:
        loop.stopped.set()
    for _, thread in started:
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def sentinel_binary() -> str:
    return require_redis7()


@pytest.fixture
def sentinel_topology(sentinel_binary: str) -> Iterator[SentinelTopology]:
    """A fresh Sentinel setup per test (failover tests change who is master)."""
    topology = SentinelTopology(sentinel_binary)
    try:
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[ClusterTopology]:
    """Three masters, no replicas, shared by a module; flush it in the tests that need it."""
    topology = ClusterTopology(require_redis7(), masters=3)
    try:
        yield topology.start()
    finally:
        topology.stop()
