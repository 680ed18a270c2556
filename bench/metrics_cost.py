#!/usr/bin/env python3
"""What Prometheus metrics cost on the fan-out path: server CPU per delivery, metrics on vs off.

    .venv/bin/python bench/metrics_cost.py [--clients 1000] [--messages 3000] [--rounds 5]
                                           [--rates 0,1000] [--baseline DIR] [--no-pin]

Starts one redis-server and two gunicorn servers (bench/app.py, one worker each, both pinned to
the server CPU), each with ``--clients`` websockets on a facility of its own:

    off  the defaults (WS4REDIS_METRICS off; the plain-integer counting of stats.py still runs)
    on   WS4REDIS_METRICS on, in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, as under
         gunicorn or uWSGI in production), with WS4REDIS_METRICS_URL scraped every second
         during the runs (Prometheus' default is every 15 s)

Before that, ``--components`` times in this process (multiprocess mode) what metrics add, piece
by piece: one hub lag observation (once per burst), one sync of the figures of ``--clients``
websockets (once a second) and one exposition (once per scrape); with them, the cost per
delivery at each rate is bounded without machine noise.

and, with ``--baseline DIR`` (a checkout of the code before metrics, e.g. ``git archive main``),
a third server ``baseline`` running that code, to show what the counting itself costs.

Then, for each rate, ``--rounds`` alternations: one run of ``--messages`` messages on each
server in turn (the order rotating from round to round), so that every variant sees the same
machine noise. A run's figure is the
server's CPU time (user + system, from /proc) divided by the messages delivered. Prints one JSON
line per run and a summary line: the median CPU microseconds per delivery of each variant, and
the ratio on/off (and off/baseline) of the medians and per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from redis_server import RedisServer, free_port  # noqa: E402

from bench.loadclient import LoadClient, build_client  # noqa: E402
from bench.measure import CLK_TCK, Cpus, cpu_seconds, raise_nofile  # noqa: E402
from bench.publisher import Publisher  # noqa: E402
from bench.servers import Server, server_env, start_gunicorn  # noqa: E402

METRICS_URL = "/ws4redis-metrics"
MIN_CPU_TICKS = 50  # a run's CPU time in clock ticks (1/100 s): less is too coarse to compare


def log(message: str) -> None:
    print(f"metrics_cost: {message}", file=sys.stderr, flush=True)


class Variant:
    """One server under test, with its clients on its own facility."""

    def __init__(self, name: str, server: Server, facility: str) -> None:
        self.name = name
        self.server = server
        self.facility = facility
        self.channel = f"broadcast:{facility}"
        self.pids = server.workers()
        self.clients: LoadClient | None = None
        self.runs: dict[float, list[float]] = {}

    def connect(self, binary: Path, clients: int) -> None:
        path = f"/ws/{self.facility}?subscribe-broadcast"
        self.clients = LoadClient(binary, "ws", self.server.port, clients, ["--path", path])
        ready = self.clients.ready()
        if ready["connected"] != clients:
            raise RuntimeError(f"{self.name}: {ready['connected']}/{clients} connected")


class Scraper(threading.Thread):
    """GETs the metrics endpoint every second, as a (busy) Prometheus would."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}{METRICS_URL}"
        self.stop = threading.Event()
        self.scrapes = 0
        self.failures = 0

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
                    self.scrapes += response.status == 200
            except OSError:
                self.failures += 1


def start(name: str, redis_url: str, cpus: Cpus, options: dict[str, Any], **env: str) -> Server:
    server_environment = server_env(redis_url, options, **env)
    if "BASELINE" in env:
        server_environment["PYTHONPATH"] = os.pathsep.join([env["BASELINE"], str(ROOT)])
    log(f"starting {name}")
    return start_gunicorn(free_port(), server_environment, cpus)


def one_run(
    variant: Variant,
    redis: RedisServer,
    run_id: int,
    messages: int,
    rate: float,
    clients: int,
    warm_up: bool = False,
) -> float:
    assert variant.clients is not None
    timeout = (messages / rate if rate else 0) + 60
    cpu0 = cpu_seconds(variant.pids)
    variant.clients.start_run(run_id, messages, timeout)
    with Publisher(redis.host, redis.port) as publisher:
        publisher.publish(variant.channel, messages, rate, 100, run_id)
    report = variant.clients.result(timeout + 30)
    cpu = cpu_seconds(variant.pids) - cpu0
    if report["received"] != messages * clients:
        raise RuntimeError(f"{variant.name}: {report['received']}/{messages * clients} received")
    if warm_up:
        return 0.0
    if cpu * CLK_TCK < MIN_CPU_TICKS:
        raise RuntimeError(
            f"{variant.name}: {cpu:.2f}s of CPU is too little to divide: more --messages"
        )
    us = cpu * 1e6 / report["received"]
    print(
        json.dumps(
            {"variant": variant.name, "run": run_id, "rate": rate, "server_cpu_s": round(cpu, 3),
             "deliveries": report["received"], "cpu_us_per_delivery": round(us, 4)}
        ),
        flush=True,
    )  # fmt: skip
    return us


def summary(variants: list[Variant], args: argparse.Namespace, scraper: Scraper) -> dict:
    by_name = {v.name: v for v in variants}
    result: dict[str, Any] = {
        "bench": "metrics_cost",
        "clients": args.clients,
        "messages": args.messages,
        "rounds": args.rounds,
        "scrapes": scraper.scrapes,
        "scrape_failures": scraper.failures,
        "rates": {},
    }
    for rate in args.rates:
        median = {v.name: statistics.median(v.runs[rate]) for v in variants}
        entry: dict[str, Any] = {
            f"{name}_us_per_delivery": round(us, 4) for name, us in median.items()
        }
        pairs = [("on", "off")] + ([("off", "baseline")] if "baseline" in by_name else [])
        for a, b in pairs:
            entry[f"ratio_{a}_{b}"] = round(median[a] / median[b], 4)
            per_round = [
                x / y for x, y in zip(by_name[a].runs[rate], by_name[b].runs[rate], strict=True)
            ]
            entry[f"ratio_{a}_{b}_median_of_rounds"] = round(statistics.median(per_round), 4)
            entry[f"ratio_{a}_{b}_per_round"] = [
                round(x / y, 3)
                for x, y in zip(by_name[a].runs[rate], by_name[b].runs[rate], strict=True)
            ]
        result["rates"][str(rate)] = entry
    return result


def component_costs(clients: int) -> dict[str, float]:
    """Microseconds per call of what metrics add, measured in a child process in multiprocess
    mode (prometheus_client reads PROMETHEUS_MULTIPROC_DIR when imported)."""
    import subprocess

    with tempfile.TemporaryDirectory() as multiproc:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        out = subprocess.run(
            [sys.executable, __file__, "--measure-components", str(clients)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    return json.loads(out.stdout)


def measure_components(clients: int) -> None:
    import timeit
    import types

    from ws4redis_gevent import metrics, relay

    assert metrics.enable()
    exporter = metrics._exporter
    assert exporter is not None
    fake = [
        types.SimpleNamespace(outbox=_Outbox(i), received=0, received_bytes=0)
        for i in range(clients)
    ]
    relay.live_relays = lambda: fake  # type: ignore[assignment]

    def per_call(fn: Any, number: int) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    def sync() -> None:
        for item in fake:
            item.outbox.sent += 1
        exporter.sync()

    result = {
        "observe_us": per_call(lambda: exporter.lag.observe(0.001), 20000),
        "sync_us": per_call(sync, 50),
        "exposition_us": per_call(metrics.exposition, 50),
    }
    print(json.dumps({k: round(v, 2) for k, v in result.items()}))


class _Outbox:
    def __init__(self, sent: int) -> None:
        self.sent = sent
        self.sent_bytes = sent * 100

    def __len__(self) -> int:
        return 0


def bounds(costs: dict[str, float], clients: int, rate: float) -> dict[str, float]:
    """Added microseconds per delivery: one observation per burst of at least one message to
    every client, one sync a second and one scrape a second (at ``rate``; flat out, the rate
    of the server, about 2.5 million deliveries a second here, is used as 2e6 / clients)."""
    per_second = (rate or 2e6 / clients) * clients
    return {
        "observe_us_per_delivery": round(costs["observe_us"] / clients, 5),
        "sync_and_scrape_us_per_delivery": round(
            (costs["sync_us"] + costs["exposition_us"]) / per_second, 5
        ),
    }


def main() -> None:
    if sys.argv[1:2] == ["--measure-components"]:
        measure_components(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rates", default="0,1000", help="msg/s per run, 0 = flat out")
    parser.add_argument("--baseline", help="a checkout of the code without metrics")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--components", action="store_true", help="time the pieces first")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.components:
        costs = component_costs(args.clients)
        record = {"components": costs, "clients": args.clients}
        record["bounds"] = {str(rate): bounds(costs, args.clients, rate) for rate in args.rates}
        print(json.dumps(record), flush=True)
    if args.rounds == 0:
        return  # --rounds 0: the components only (tests/test_bench_smoke.py)
    raise_nofile()
    cpus = Cpus.plan(args.no_pin)
    binary = build_client()
    variants: list[Variant] = []
    with RedisServer() as redis, tempfile.TemporaryDirectory() as multiproc:
        try:
            on_options = {"metrics": True, "metrics_url": METRICS_URL}
            variants.append(Variant("off", start("off", redis.url, cpus, {}), "off"))
            server_on = start("on", redis.url, cpus, on_options, PROMETHEUS_MULTIPROC_DIR=multiproc)
            variants.append(Variant("on", server_on, "on"))
            if args.baseline:
                server = start("baseline", redis.url, cpus, {}, BASELINE=args.baseline)
                variants.append(Variant("baseline", server, "baseline"))
            for variant in variants:
                variant.connect(binary, args.clients)
            scraper = Scraper(server_on.port)
            scraper.start()
            run_id = 0
            for rate in args.rates:
                for variant in variants:
                    run_id += 1  # a warm-up run each, not counted
                    one_run(variant, redis, run_id, args.messages // 5, rate, args.clients, True)
                for round_ in range(args.rounds):
                    log(f"rate {rate or 'flat out'}: round {round_ + 1}/{args.rounds}")
                    # Each round in another order: no variant always runs first or last.
                    turn = round_ % len(variants)
                    for variant in variants[turn:] + variants[:turn]:
                        run_id += 1
                        us = one_run(variant, redis, run_id, args.messages, rate, args.clients)
                        variant.runs.setdefault(rate, []).append(us)
            scraper.stop.set()
            print(json.dumps(summary(variants, args, scraper)), flush=True)
        finally:
            for variant in variants:
                if variant.clients is not None:
                    variant.clients.stop()
                variant.server.stop()


if __name__ == "__main__":
    main()
