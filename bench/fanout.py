#!/usr/bin/env python3
"""The fan-out benchmark (issue #8): messages per second one worker pushes to many websockets.

    .venv/bin/python bench/fanout.py [--clients 1000] [--messages 2000] [--rates 200,0]
                                     [--targets redis,gunicorn,uwsgi] [--quick] [--no-pin] ...

For each target it starts the server under test, connects ``--clients`` websockets subscribed
to one broadcast facility (timing the handshakes), measures the server's memory per idle
connection and its Redis connections, then for each rate publishes ``--messages`` messages of
``--size`` bytes straight to Redis and measures deliveries per second, loss, order, latency and
the server's CPU per delivery. Targets:

    redis     the baseline: the clients subscribe to Redis directly; redis-server is the server
    gunicorn  gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker -w 1 bench.app
    uwsgi     uwsgi --http-socket --gevent 20000 bench.app (skipped when it does not serve)
    gunicorn-deflate, uwsgi-deflate
              the same servers, with clients that negotiate permessage-deflate (as Chromium
              offers it); memory is measured idle, then once each sent one compressed message

and the peers (bench/peers/, installed by the bench into bench/.build/peers): what a Python or
Node team would write instead, compression off:

    websockets  Python websockets on uvloop, redis.asyncio pub/sub, websockets.broadcast
    node        Node ws with one ioredis subscriber, client.send in a loop
    channels    Django Channels, RedisPubSubChannelLayer, a consumer in a group, uvicorn

Then ``--handshakes`` websocket handshakes (100 in flight) against each server, and against
gunicorn serving the Django variant (bench/django_app.py: a signed-cookie session, with the
user and groups read from it). With two CPUs or more, the server under test runs on the first
CPU and everything else (load client, publisher, the driver, redis-server when it is not the
server under test) on the second.

Output: one JSON line per (target, rate) run and per handshake run, then a summary line with
the ratios of each target to the Redis baseline at the same rate, and of this project's
servers to each peer. Progress, and a table side by side at the end, go to stderr.
bench/README.md explains every field.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from redis_server import RedisServer, execute, free_port  # noqa: E402

from bench.loadclient import (  # noqa: E402
    LoadClient,
    build_client,
    merged_latency,
    run_handshakes,
    split,
)
from bench.measure import (  # noqa: E402
    CLK_TCK,
    Cpus,
    cpu_busy,
    cpu_seconds,
    pin,
    raise_nofile,
    rss_kb,
    settled_rss_kb,
)
from bench.peers.environments import PeerUnavailable  # noqa: E402
from bench.peers.targets import PEERS  # noqa: E402
from bench.peers.targets import start as start_peer  # noqa: E402
from bench.publisher import Publisher  # noqa: E402
from bench.servers import Server, find_uwsgi, server_env, start_gunicorn, start_uwsgi  # noqa: E402

OURS = ("gunicorn", "uwsgi")
TARGETS = ("redis", *OURS, "gunicorn-deflate", "uwsgi-deflate", *PEERS)
DEFAULT_TARGETS = ("redis", *OURS, *PEERS)
FACILITY = "bench"
CHANNEL = f"broadcast:{FACILITY}"
WS_PATH = f"/ws/{FACILITY}?subscribe-broadcast"
DJANGO_PATH = f"/ws/{FACILITY}?subscribe-broadcast&subscribe-user&subscribe-group"
SESSION_USER = "benchuser"  # bench/django_app.py puts this user in the group "bench"
FULL = {"clients": 1000, "messages": 2000, "handshakes": 5000, "run_timeout": 60.0}
QUICK = {"clients": 10, "messages": 50, "handshakes": 100, "run_timeout": 20.0}
MIN_CPU_TICKS = 10  # less server CPU than this is too coarse to divide into per-delivery costs


def log(message: str) -> None:
    print(f"fanout: {message}", file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def per(numerator: float, denominator: float | None, digits: int = 3) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def redis_pid(redis: RedisServer) -> int:
    assert redis._proc is not None, "redis-server is not running"
    return redis._proc.pid


class Skipped(Exception):
    """A target that cannot be measured here (e.g. uWSGI without a uWSGI backend)."""


@dataclass
class UnderTest:
    """The server under test of one target: where clients connect, which processes to watch."""

    name: str
    mode: str  # wsclient mode: "ws" or "redis"
    port: int
    pids: list[int]
    server: Server | None = None  # None for the Redis baseline
    client_flags: list[str] = dataclasses.field(default_factory=list)  # more wsclient options
    channel: str = CHANNEL  # where the publisher publishes
    wrap: Callable[[bytes], bytes] | None = None  # what it makes of each payload (Channels)


class Bench:
    """One invocation: a redis-server, the options, and the records emitted so far."""

    def __init__(self, args: argparse.Namespace, redis: RedisServer, cpus: Cpus) -> None:
        self.args = args
        self.redis = redis
        self.cpus = cpus
        self.binary = build_client()
        self.uwsgi = find_uwsgi()
        self.records: list[dict[str, Any]] = []
        self.window: float | None = None  # the write window of the target being measured
        self._run_id = 0

    def emit(self, record: dict[str, Any]) -> None:
        emit(record)
        self.records.append(record)

    # -- targets ---------------------------------------------------------------------------

    def target(self, name: str, window: float | None = None) -> None:
        """Measure one target: idle connections, then one run per rate, then handshakes.
        ``window``: this project's WS4REDIS_WRITE_WINDOW (ms) for this target's server."""
        self.window = window
        try:
            under_test = self._start(name)
        except Skipped as exc:
            log(f"{name}: skipped: {exc}")
            self.emit({"target": name, "skipped": str(exc)})
            return
        try:
            self._fanout(under_test)
            first_window = window is None or window == self.args.write_windows[0]
            if under_test.server is not None and self.args.handshakes and first_window:
                self._handshakes(under_test, "plain", WS_PATH)
        finally:
            if under_test.server is not None:
                under_test.server.stop()
            else:
                pin(under_test.pids[0], self.cpus.load)

    def _start(self, name: str) -> UnderTest:
        deflate = name.endswith("-deflate")
        windowed = {} if self.window is None else {"write_window": self.window}
        compressed = {"compression": True} if deflate else {}
        env = server_env(self.redis.url, {**self.args.app_options, **compressed, **windowed})
        if name == "redis":
            # The baseline's server under test is redis-server: it gets the server CPU.
            pid = redis_pid(self.redis)
            pin(pid, self.cpus.server)
            return UnderTest(name, "redis", self.redis.port, [pid])
        channel, wrap = CHANNEL, None
        if name in PEERS:
            try:
                peer = start_peer(name, free_port(), self.redis.url, CHANNEL, env, self.cpus)
            except PeerUnavailable as exc:
                raise Skipped(f"{name} cannot be installed: {exc}") from exc
            except RuntimeError as exc:
                raise Skipped(f"{name} did not start: {exc}") from exc
            server, channel, wrap = peer.server, peer.channel, peer.wrap
        elif name.startswith("gunicorn"):
            server = start_gunicorn(free_port(), env, self.cpus)
        elif self.uwsgi is None:
            raise Skipped("no uwsgi binary (pip install uwsgi)")
        else:
            try:
                server = start_uwsgi(free_port(), env, self.cpus, self.uwsgi)
            except RuntimeError as exc:
                raise Skipped(f"uwsgi did not start: {exc}") from exc
        # One handshake: checks that websockets are served, and warms the worker up (imports,
        # the hub and its Redis connection) so that idle memory is measured after that.
        probe = run_handshakes(self.binary, server.port, 1, WS_PATH)
        if probe["ok"] != 1:
            server.stop()
            raise Skipped(f"no websocket served: {probe['error']}; log: {server.log_path}")
        under_test = UnderTest(
            name, "ws", server.port, server.workers(), server, channel=channel, wrap=wrap
        )
        if deflate:
            under_test.client_flags = ["--deflate"]
        return under_test

    def _fanout(self, under_test: UnderTest) -> None:
        args = self.args
        pids = under_test.pids
        rss_idle = settled_rss_kb(pids)
        extra = ["--channel", CHANNEL] if under_test.mode == "redis" else ["--path", WS_PATH]
        extra += under_test.client_flags
        log(f"{under_test.name}: connecting {args.clients} clients")
        started = time.monotonic()
        clients = [
            LoadClient(self.binary, under_test.mode, under_test.port, n, extra)
            for n in split(args.clients, args.client_procs)
        ]
        try:
            readies = [client.ready() for client in clients]
            connect_s = time.monotonic() - started
            connected = sum(r["connected"] for r in readies)
            rss_connected = settled_rss_kb(pids)
            idle = {
                "target": under_test.name,
                **({} if self.window is None else {"write_window_ms": self.window}),
                "clients": args.clients,
                "connected": connected,
                "connect_errors": [r["error"] for r in readies if r["error"]][:3],
                "connect_s": round(connect_s, 3),
                "connects_per_s": per(connected, connect_s, 1),
                "handshake_us": {
                    k: max(r["handshake_us"][k] for r in readies)
                    for k in ("p50", "p90", "p99", "max")
                },
                "server_pids": pids,
                "rss_idle_kb": rss_idle,
                "rss_connected_kb": rss_connected,
                "kb_per_connection": per(rss_connected - rss_idle, connected, 2),
                "redis_connections": self._redis_connections(under_test),
            }
            if "--deflate" in under_test.client_flags:
                # A client that sent a compressed message leaves an inflate state behind (its
                # context, taken over to its next message).
                for client in clients:
                    if not os.environ.get("NOHELLO"):
                        client.hello()
                rss_spoken = settled_rss_kb(pids)
                idle["kb_per_connection_spoken"] = per(rss_spoken - rss_idle, connected, 2)
            for rate in args.rates:
                record = {**idle, **self._publish_run(under_test, clients, connected, rate)}
                if under_test.server is not None and not under_test.server.alive:
                    record["server_died"] = under_test.server.output()
                self.emit(record)
        finally:
            for client in clients:
                client.stop()

    def _redis_connections(self, under_test: UnderTest) -> int:
        """Connections to Redis the target needs: the server's (not named bench-*), or, for
        the baseline, the subscribers themselves."""
        listing = execute(self.redis, "CLIENT", "LIST").decode().splitlines()
        names = [dict(p.split("=", 1) for p in line.split() if "=" in p) for line in listing]
        theirs = [n for n in names if not n.get("cmd", "").startswith("client")]  # not ours
        if under_test.mode == "redis":
            return sum(1 for n in theirs if n.get("name") == "bench-sub")
        return sum(1 for n in theirs if not n.get("name", "").startswith("bench-"))

    # -- one publishing run ----------------------------------------------------------------

    def _publish_run(
        self, under_test: UnderTest, clients: list[LoadClient], connected: int, rate: float
    ) -> dict[str, Any]:
        args = self.args
        self._run_id += 1
        timeout = (args.messages / rate if rate else 0) + args.run_timeout
        log(f"run {self._run_id}: {args.messages} messages at {rate or 'flat out'} msg/s")
        pids = under_test.pids
        # The load CPU: the clients (they report their own), this process (the publisher) and
        # redis-server when it is not the server under test.
        load_pids = [os.getpid()] + ([redis_pid(self.redis)] if under_test.mode == "ws" else [])
        cpu0, load0, busy0 = cpu_seconds(pids), cpu_seconds(load_pids), cpu_busy(self.cpus.server)
        wall0 = time.monotonic()
        profiler = self._start_profiler(under_test, f"rate{rate:g}")
        for client in clients:
            client.start_run(self._run_id, args.messages, timeout)
        with Publisher(self.redis.host, self.redis.port) as publisher:
            sent = publisher.publish(
                under_test.channel,
                args.messages,
                rate,
                args.size,
                self._run_id,
                args.payload,
                under_test.wrap,
            )
        reports = [client.result(timeout + 30) for client in clients]
        wall = time.monotonic() - wall0
        profile = self._stop_profiler(profiler)
        server_cpu = cpu_seconds(pids) - cpu0
        load_cpu = cpu_seconds(load_pids) - load0
        busy1 = cpu_busy(self.cpus.server)
        received = sum(r["received"] for r in reports)
        last = max(r["last_recv_ns"] for r in reports)
        span = (last - sent.first_send_ns) / 1e9 if received else 0.0
        client_cpu = sum(r["cpu_s"] for r in reports)
        measurable = server_cpu * CLK_TCK >= MIN_CPU_TICKS

        def total(key: str) -> int:
            return sum(r[key] for r in reports)

        return {
            "rate": rate,
            "messages": args.messages,
            "size": args.size,
            "payload": args.payload,
            "publish_s": round(sent.seconds, 4),
            "publish_msgs_per_s": per(sent.published, sent.seconds, 1),
            "redis_receivers": sorted({sent.receivers_min, sent.receivers_max}),
            "expected": total("expected"),
            "received": received,
            "lost": total("lost"),
            "out_of_order": total("out_of_order"),
            "gaps": total("gaps"),
            "stale": total("stale"),
            "malformed": total("malformed"),
            "closed": total("closed"),
            "pings_answered": total("pings"),
            "client_errors": [r["error"] for r in reports if r["error"]][:3],
            "timed_out": any(r["timed_out"] for r in reports),
            "wire_bytes": total("bytes"),
            "wire_bytes_per_delivery": per(total("bytes"), received, 1),
            "delivery_s": round(span, 4),
            "deliveries_per_s": per(received, span, 1),
            "latency_us": merged_latency(reports),
            "server_cpu_s": round(server_cpu, 3),
            "server_cpu_share": per(server_cpu, wall),
            "server_cpu_busy_share": per(busy1[0] - busy0[0], busy1[1] - busy0[1]),
            "cpu_us_per_delivery": per(server_cpu * 1e6, received) if measurable else None,
            "client_cpu_s": round(client_cpu, 3),
            "client_cpu_share": per(client_cpu, wall),
            "load_cpu_share": per(client_cpu + load_cpu, wall),
            "run_wall_s": round(wall, 3),
            "rss_after_kb": rss_kb(pids),
            **profile,
        }

    # -- profiling (--profile DIR, with py-spy) --------------------------------------------

    def _start_profiler(
        self, under_test: UnderTest, run: str
    ) -> tuple[subprocess.Popen[bytes], Path] | None:
        if not self.args.profile or under_test.mode != "ws":
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not os.access(spy, os.X_OK):
            log("--profile: no py-spy (pip install py-spy): not profiling")
            return None
        out = Path(self.args.profile) / f"{under_test.name}-{run}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        # Sampling is done from the load CPU; the worker is not slowed (--nonblocking).
        command = [spy, "record", "--pid", str(under_test.pids[-1]), "--rate", "1000",
                   "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the first message
        return proc, out

    def _stop_profiler(
        self, profiler: tuple[subprocess.Popen[bytes], Path] | None
    ) -> dict[str, Any]:
        if profiler is None:
            return {}
        proc, out = profiler
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        return {"profile": str(out), "profile_top": profile_top(out)}

    # -- handshakes ------------------------------------------------------------------------

    def _handshakes(
        self, under_test: UnderTest, app: str, path: str, cookie: str | None = None, **extra: Any
    ) -> None:
        log(f"{under_test.name}/{app}: {self.args.handshakes} handshakes")
        profiler = self._start_profiler(under_test, f"handshakes-{app}")
        cpu0 = cpu_seconds(under_test.pids)
        result = run_handshakes(self.binary, under_test.port, self.args.handshakes, path, cookie)
        server_cpu = cpu_seconds(under_test.pids) - cpu0
        profile = self._stop_profiler(profiler)
        del result["mode"]
        measurable = server_cpu * CLK_TCK >= MIN_CPU_TICKS
        self.emit({
            "target": under_test.name,
            "app": app,
            "mode": "handshake",
            "path": path,
            **result,
            "server_cpu_s": round(server_cpu, 3),
            "cpu_us_per_handshake": per(server_cpu * 1e6, result["ok"], 1) if measurable else None,
            **extra,
            **profile,
        })  # fmt: skip

    def django_handshakes(self) -> None:
        """Handshakes against gunicorn serving Django, each one loading a session."""
        env = server_env(
            self.redis.url, self.args.app_options, DJANGO_SETTINGS_MODULE="bench.django_settings"
        )
        cookie = subprocess.run(
            [sys.executable, "-m", "bench.django_app", "cookie", SESSION_USER],
            cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True,
        ).stdout.strip()  # fmt: skip
        server = start_gunicorn(free_port(), env, self.cpus, "bench.django_app:application")
        try:
            under_test = UnderTest("gunicorn", "ws", server.port, server.workers(), server)
            self._handshakes(
                under_test, "django", DJANGO_PATH, cookie,
                session_verified=self._session_used(server.port, cookie),
            )  # fmt: skip
        finally:
            server.stop()

    def _session_used(self, port: int, cookie: str) -> bool:
        """Whether a handshake with ``cookie`` subscribed the session user's and group's
        channels: proof that the server really loaded the session."""
        client = LoadClient(self.binary, "ws", port, 1, ["--path", DJANGO_PATH, "--cookie", cookie])
        try:
            client.ready()
            channels = {c.decode() for c in execute(self.redis, "PUBSUB", "CHANNELS")}
        finally:
            client.stop()
        wanted = {f"user:{SESSION_USER}:{FACILITY}", f"group:bench:{FACILITY}"}
        if not wanted <= channels:
            log(f"django: the session was not used; subscribed channels: {sorted(channels)}")
        return wanted <= channels

    # -- the summary -----------------------------------------------------------------------

    def summary(self, elapsed: float, nofile: int, loadavg: float) -> dict[str, Any]:
        runs = [r for r in self.records if "rate" in r]
        baseline = {r["rate"]: r for r in runs if r["target"] == "redis"}
        ratios = []
        for run in runs:
            base = baseline.get(run["rate"])
            if run["target"] == "redis" or base is None:
                continue
            ratio = {"target": run["target"], "rate": run["rate"], **_window(run)}
            for name, key in (
                ("deliveries_per_s_ratio", ("deliveries_per_s",)),
                ("p50_ratio", ("latency_us", "p50")),
                ("p99_ratio", ("latency_us", "p99")),
                ("cpu_us_per_delivery_ratio", ("cpu_us_per_delivery",)),
            ):
                ratio[name] = per(_get(run, key) or 0, _get(base, key))
            ratios.append(ratio)
        return {
            "summary": True,
            "elapsed_s": round(elapsed, 1),
            "loadavg_1min": [loadavg, round(os.getloadavg()[0], 2)],
            "pinned": self.cpus.pinned,
            "server_cpu": self.cpus.server,
            "load_cpu": self.cpus.load,
            "nofile": nofile,
            "clients": self.args.clients,
            "messages": self.args.messages,
            "size": self.args.size,
            "app_options": self.args.app_options,
            "ratios": ratios,
            "against_peers": against_peers(runs),
            "load_cpu_saturated": [
                {k: r[k] for k in ("target", "rate", "client_cpu_share", "load_cpu_share")}
                for r in runs
                if (r["load_cpu_share"] or 0) > 0.9 and r["run_wall_s"] >= 1
            ],
            "deflate_ratios": deflate_ratios(runs),
            "lost_total": sum(r["lost"] for r in runs),
            "skipped": [r["target"] for r in self.records if "skipped" in r],
        }


P99 = ("latency_us", "p99")


def deflate_ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each -deflate target against the same server without compression, at the same rate:
    bytes on the wire, server CPU per delivery and p99 latency (above 1: more with compression),
    and memory per idle websocket: without compression, with compression negotiated, and
    once it sent one compressed message."""
    plain = {(r["target"], r["rate"]): r for r in runs}
    ratios = []
    for run in runs:
        base = plain.get((run["target"].removesuffix("-deflate"), run["rate"]))
        if not run["target"].endswith("-deflate") or base is None:
            continue
        ratios.append({
            "target": run["target"],
            "rate": run["rate"],
            "wire_bytes_ratio": per(run["wire_bytes"], base["wire_bytes"]),
            "cpu_us_per_delivery_ratio": per(
                run["cpu_us_per_delivery"] or 0, base["cpu_us_per_delivery"]
            ),
            "p99_ratio": per(_get(run, P99) or 0, _get(base, P99)),
            "kb_per_connection": [
                base["kb_per_connection"],
                run["kb_per_connection"],
                run.get("kb_per_connection_spoken"),
            ],
        })  # fmt: skip
    return ratios


PEER_FIGURES = (  # (name, key): each a ratio ours / peer
    ("deliveries_per_s_ratio", ("deliveries_per_s",)),
    ("p50_ratio", ("latency_us", "p50")),
    ("p99_ratio", ("latency_us", "p99")),
    ("cpu_us_per_delivery_ratio", ("cpu_us_per_delivery",)),
    ("kb_per_connection_ratio", ("kb_per_connection",)),
)


def against_peers(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This project's servers against each peer at the same rate, in the same invocation:
    ours / peer for each figure (above 1: ours delivers more, but waits and costs more)."""
    peers = {(r["target"], r["rate"]): r for r in runs if r["target"] in PEERS}
    ratios = []
    for run in (r for r in runs if r["target"] in OURS):
        for (peer, rate), theirs in peers.items():
            if rate != run["rate"]:
                continue
            ratio: dict[str, Any] = {"target": run["target"], **_window(run), "peer": peer,
                                     "rate": rate}  # fmt: skip
            for name, key in PEER_FIGURES:
                ratio[name] = per(_get(run, key) or 0, _get(theirs, key))
            ratios.append(ratio)
    return ratios


def side_by_side(records: list[dict[str, Any]]) -> str:
    """The runs of one invocation as a table (for stderr and bench/README.md)."""
    rows = [
        "| target | rate | deliveries/s | lost | p50 ms | p99 ms | us CPU/delivery"
        " | KiB/conn idle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = sorted((r for r in records if "rate" in r), key=lambda r: (r["rate"] == 0, r["rate"]))
    for r in runs:  # steady rates first, flat out last; targets in the order they ran
        latency, cpu = r["latency_us"], r["cpu_us_per_delivery"]
        rate = f"{r['rate']:g}/s" if r["rate"] else "flat out"
        target = r["target"] + (f" ({r['write_window_ms']:g} ms window)" if _window(r) else "")
        rows.append(
            f"| {target} | {rate} "
            f"| {(r['deliveries_per_s'] or 0) / 1000:.1f}k | {r['lost']} "
            f"| {latency['p50'] / 1000:.1f} | {latency['p99'] / 1000:.1f} "
            f"| {'-' if cpu is None else f'{cpu:.2f}'} | {r['kb_per_connection']} |"
        )
    return "\n".join(rows)


def profile_top(path: Path, count: int = 12) -> list[list[Any]]:
    """The functions the sampled process spent its time in (self time: the innermost frame of
    each sample), as [function, share of the samples], from py-spy's raw (collapsed) output."""
    leaves: dict[str, int] = {}
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not stack or not samples.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            leaves[leaf] = leaves.get(leaf, 0) + int(samples)
            total += int(samples)
    ranked = sorted(leaves.items(), key=lambda item: -item[1])[:count]
    return [[name, round(n / total, 3)] for name, n in ranked] if total else []


def _window(record: dict[str, Any]) -> dict[str, float]:
    """The run's write window, when the invocation set one (--write-windows)."""
    return {"write_window_ms": record["write_window_ms"]} if "write_window_ms" in record else {}


def _get(record: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key:
        record = record.get(part) if isinstance(record, dict) else None  # type: ignore[assignment]
    return record


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--clients", type=int, help="websockets per target (1000; --quick: 10)")
    add("--messages", type=int, help="messages per run (2000; --quick: 50)")
    add("--size", type=int, default=100, help="message size in bytes (100)")
    add("--payload", choices=("x", "json"), default="x", help="padding: x..., or JSON text (x)")
    add("--rates", default="200,0", help="one run per rate, msg/s; 0 = flat out (200,0)")
    add(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"of {','.join(TARGETS)} (all but the -deflate ones)",
    )
    add("--handshakes", type=int, help="handshakes per server (5000; --quick: 100; 0: none)")
    add("--client-procs", type=int, default=1, help="load client processes (1)")
    add("--run-timeout", type=float, help="seconds a run may last after publishing (60)")
    add("--app-options", type=json.loads, default={}, help='middleware options, JSON: {"a": 1}')
    add("--write-windows", metavar="MS,MS", help="run gunicorn and uwsgi once per write window")
    add("--no-pin", action="store_true", help="leave processes on every CPU")
    add("--profile", metavar="DIR", help="sample the worker with py-spy during each run")
    add("--quick", action="store_true", help="a smoke run: small defaults, about 15 s")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.rates = [float(rate) for rate in args.rates.split(",")]
    args.targets = args.targets.split(",")
    args.write_windows = (
        [float(w) for w in args.write_windows.split(",")] if args.write_windows else [None]
    )
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started, loadavg = time.monotonic(), round(os.getloadavg()[0], 2)
    cpus = Cpus.plan(args.no_pin)
    nofile = raise_nofile()
    log(f"pinned: {cpus.pinned} (server CPU {cpus.server}, load CPU {cpus.load}); nofile {nofile}")
    if args.clients + 100 > nofile:
        log(f"warning: RLIMIT_NOFILE is {nofile}: {args.clients} clients may not all connect")
    redis_args = ["--maxclients", str(max(10000, args.clients + 100))]
    with RedisServer(args=redis_args) as redis:
        bench = Bench(args, redis, cpus)
        for target in args.targets:
            for window in args.write_windows if target in OURS else [None]:
                bench.target(target, window)
        if args.handshakes and "gunicorn" in args.targets:  # (not for -deflate targets alone)
            bench.django_handshakes()
        emit(bench.summary(time.monotonic() - started, nofile, loadavg))
        print(side_by_side(bench.records), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
