"""What presence (WS4REDIS_PRESENCE) costs, with and without it, in the same gunicorn worker.

One redis-server, one gunicorn GeventWebSocketWorker serving two facilities: ``plain`` (no
presence) and ``present`` (presence, ``ttl`` seconds). Measured as CPU time and counts, not
wall time (the machine may be shared):

1. per handshake: worker CPU, Redis CPU and Redis commands, for ``--handshakes`` handshakes
   (each closed right after its 101: a presence entry added, then removed), alternating the
   two facilities for ``--rounds`` rounds;
2. per idle websocket: worker RSS and Redis ``used_memory``, with ``--clients`` websockets open
   on one facility, then on the other;
3. the load of refreshing: over ``--window`` seconds with those websockets idle, the worker's
   and Redis' CPU time and Redis commands, plain vs present; and per refresh of every websocket.

    .venv/bin/python bench/presence_cost.py [--clients 10000] [--handshakes 2000] [--ttl 6]

Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import redis  # noqa: E402
from redis_server import RedisServer, free_port  # noqa: E402

from bench.loadclient import LoadClient, build_client, run_handshakes  # noqa: E402
from bench.measure import Cpus, cpu_seconds, raise_nofile, settled_rss_kb  # noqa: E402
from bench.servers import server_env, start_gunicorn  # noqa: E402

FACILITIES = ("plain", "present")


def log(text: str) -> None:
    print(f"presence_cost: {text}", file=sys.stderr, flush=True)


class RedisMeter:
    """Redis' CPU time (INFO cpu) and command counts (INFO commandstats)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def read(self) -> dict[str, float]:
        cpu = self.client.info("cpu")
        stats = self.client.info("commandstats")
        reading = {"cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}
        for name, fields in stats.items():
            reading[name.removeprefix("cmdstat_")] = float(fields["calls"])
        return reading

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        found = {k: after[k] - before.get(k, 0.0) for k in after}
        found["info"] = found.get("info", 0.0) - 2  # the two readings' own INFO commands
        return {k: v for k, v in found.items() if v}


def handshake_costs(args: Any, binary: Path, port: int, worker: list[int], meter: RedisMeter):
    per: dict[str, dict[str, list[float]]] = {f: {} for f in FACILITIES}
    for round_ in range(args.rounds):
        for facility in FACILITIES:
            cpu0, redis0 = cpu_seconds(worker), meter.read()
            report = run_handshakes(
                binary, port, args.handshakes, f"/ws/{facility}?subscribe-broadcast"
            )
            time.sleep(1.0)  # the removals after the closes are sent by the worker meanwhile
            cpu1, redis1 = cpu_seconds(worker), meter.read()
            done = max(1, int(report.get("ok", args.handshakes)))
            changes = RedisMeter.delta(redis0, redis1)
            figures = {
                "worker_cpu_us": (cpu1 - cpu0) / done * 1e6,
                "redis_cpu_us": changes.pop("cpu", 0.0) / done * 1e6,
                # Commands a script runs count too; EVAL is the round trip from the worker.
                "redis_commands_incl_scripts": sum(changes.values()) / done,
                "redis_evals": evals(changes) / done,
            }
            for name, value in figures.items():
                per[facility].setdefault(name, []).append(value)
            log(f"round {round_ + 1} {facility}: {json.dumps(figures)}")
    return {
        facility: {name: round(statistics.median(v), 2) for name, v in figures.items()}
        for facility, figures in per.items()
    }


def idle_costs(args: Any, binary: Path, start: Any, meter: RedisMeter):
    # A fresh worker for each facility: memory freed by the first run would otherwise make
    # the second look cheaper than it is.
    results: dict[str, dict[str, float]] = {}
    client = meter.client
    for facility in FACILITIES:
        gunicorn = start()
        try:
            results[facility] = idle_cost(args, binary, gunicorn, client, meter, facility)
        finally:
            gunicorn.stop()
        wait_until_gone(client)
    return results


def idle_cost(
    args: Any, binary: Path, gunicorn: Any, client: redis.Redis, meter: RedisMeter, facility: str
) -> dict[str, float]:
    port, worker = gunicorn.port, gunicorn.workers()
    rss0 = settled_rss_kb(worker)
    mem0 = int(client.info("memory")["used_memory"])
    path = f"/ws/{facility}?subscribe-broadcast"
    load = LoadClient(binary, "ws", port, args.clients, ["--path", path])
    try:
        ready = load.ready()
        opened = int(ready["connected"])
        rss1 = settled_rss_kb(worker)
        mem1 = int(client.info("memory")["used_memory"])
        log(f"{facility}: {opened} websockets open, measuring {args.window} s idle")
        cpu0, redis0 = cpu_seconds(worker), meter.read()
        time.sleep(args.window)  # a benchmark's measuring window, not a test's wait
        cpu1, redis1 = cpu_seconds(worker), meter.read()
    finally:
        load.stop()
    changes = RedisMeter.delta(redis0, redis1)
    return {
        "websockets": opened,
        "worker_rss_bytes_per_websocket": round((rss1 - rss0) * 1024 / max(1, opened)),
        "redis_bytes_per_websocket": round((mem1 - mem0) / max(1, opened)),
        "idle_worker_cpu_ms_per_s": round((cpu1 - cpu0) / args.window * 1e3, 2),
        "idle_redis_cpu_ms_per_s": round(changes.pop("cpu", 0.0) / args.window * 1e3, 2),
        "idle_redis_commands_incl_scripts_per_s": round(sum(changes.values()) / args.window, 1),
        "idle_redis_evals_per_s": round(evals(changes) / args.window, 2),
    }


def evals(changes: dict[str, float]) -> float:
    return changes.get("eval", 0.0) + changes.get("evalsha", 0.0)


def wait_until_gone(client: redis.Redis, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.zcard("@{broadcast:present}:connections") and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=6.0, help="presence ttl (refresh: ttl/3)")
    parser.add_argument("--window", type=float, default=12.0, help="idle measuring window (s)")
    parser.add_argument(
        "--expire",
        type=int,
        default=3600,
        help="WS4REDIS_EXPIRE (default: the library's): >0 adds a read of the stored messages "
        "to every handshake, 0 leaves plain handshakes without any Redis round trip",
    )
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    cpus = Cpus.plan(args.no_pin)
    nofile = raise_nofile()
    binary = build_client()
    options = {
        "presence": {"present": {"ttl": args.ttl}},
        "max_connections": args.clients + 1000,
        "expire": args.expire,
    }
    with RedisServer(args=["--maxclients", str(args.clients + 1000)]) as server:
        meter = RedisMeter(redis.Redis.from_url(server.url))
        env = server_env(server.url, options)

        def start() -> Any:
            return start_gunicorn(free_port(), env, cpus)

        gunicorn = start()
        try:
            handshakes = handshake_costs(args, binary, gunicorn.port, gunicorn.workers(), meter)
        finally:
            gunicorn.stop()
        idle = idle_costs(args, binary, start, meter)
    refreshes = args.window / (args.ttl / 3)
    present, plain = idle["present"], idle["plain"]
    extra_redis_ms = (present["idle_redis_cpu_ms_per_s"] - plain["idle_redis_cpu_ms_per_s"]) * (
        args.window / refreshes
    )
    print(
        json.dumps(
            {
                "bench": "presence_cost",
                "note": "CPU times and counts, not wall time: the machine may be shared",
                "pinned": cpus.pinned,
                "nofile": nofile,
                "ttl": args.ttl,
                "expire": args.expire,
                "handshakes": args.handshakes,
                "per_handshake": handshakes,
                "handshake_worker_cpu_ratio": round(
                    handshakes["present"]["worker_cpu_us"] / handshakes["plain"]["worker_cpu_us"],
                    3,
                ),
                "idle": idle,
                "refresh": {
                    "refreshes_in_window": round(refreshes, 1),
                    "extra_redis_cpu_ms_per_refresh_of_all": round(extra_redis_ms, 2),
                    "extra_redis_cpu_ms_per_s_at_default_ttl_30": round(extra_redis_ms / 10.0, 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
