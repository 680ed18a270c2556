"""What history costs a publisher: RedisPublisher.publish_message with and without it.

Starts a real redis-server, then times rounds of N publishes of a 100-byte message, alternating
the two variants so that both see the same machine noise, and prints one JSON line:
median microseconds per publish for each variant and their ratio.

    .venv/bin/python bench/history_cost.py [--publishes 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from redis_server import RedisServer  # noqa: E402

from ws4redis_gevent.publisher import RedisPublisher  # noqa: E402
from ws4redis_gevent.settings import Settings  # noqa: E402


def time_round(publisher: RedisPublisher, count: int, payload: bytes) -> float:
    start = time.perf_counter()
    for _ in range(count):
        publisher.publish_message(payload)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--expire", type=int, default=0, help="WS4REDIS_EXPIRE for both")
    args = parser.parse_args()
    payload = b"x" * args.size
    with RedisServer() as server:
        plain = RedisPublisher(
            facility="plain",
            broadcast=True,
            settings=Settings(connection=server.url, expire=args.expire),
        )
        history = RedisPublisher(
            facility="hist",
            broadcast=True,
            settings=Settings(
                connection=server.url,
                expire=args.expire,
                history={"hist": {"size": 1000, "ttl": 3600}},
            ),
        )
        time_round(plain, 200, payload)  # warm up connections and load the script
        time_round(history, 200, payload)
        results: dict[str, list[float]] = {"plain": [], "history": []}
        for _ in range(args.rounds):
            results["plain"].append(time_round(plain, args.publishes, payload))
            results["history"].append(time_round(history, args.publishes, payload))
    plain_us = statistics.median(results["plain"])
    history_us = statistics.median(results["history"])
    print(
        json.dumps(
            {
                "bench": "history_cost",
                "publishes_per_round": args.publishes,
                "rounds": args.rounds,
                "size": args.size,
                "expire": args.expire,
                "plain_us_per_publish": round(plain_us, 2),
                "history_us_per_publish": round(history_us, 2),
                "ratio": round(history_us / plain_us, 3),
                "extra_us": round(history_us - plain_us, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
