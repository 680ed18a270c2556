"""What the relay's read time slice costs: server CPU for inbound messages, sliced or not.

The relay reads and handles a websocket's frames for at most READ_SLICE seconds per wake-up,
then yields (fairness: a client flooding tiny frames cannot hold the worker). This script runs
the test server (``tests/serve.py``) twice per round, once as shipped and once with
READ_SLICE set to infinity (a websocket reads until its socket is empty, as before the
slice), sends the same messages to each, and prints the server's CPU time (utime + stime)
and the ratio. Needs a ``redis-server`` (WS4REDIS_TEST_REDIS_SERVER or on PATH).

    python -m bench.read_slice [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bench.measure import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from raw_client import BINARY, PING, PONG, TEXT, RawClient, encode_client_frame  # noqa: E402
from redis_server import RedisServer  # noqa: E402

# The test server, with the relay's time slice set from the environment.
SERVE = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["serve.py"]
    import serve
    from ws4redis_gevent import relay
    relay.READ_SLICE = float(os.environ["READ_SLICE"])
    serve.main()
    """
)
WORKLOADS = {
    "1 MiB messages x 200": (encode_client_frame(BINARY, b"\xff" * (1 << 20)), 200),
    "100-byte messages x 200,000": (encode_client_frame(TEXT, b"x" * 100) * 1000, 200),
}


def server_cpu(redis_url: str, read_slice: float, chunk: bytes, repeat: int) -> float:
    """CPU seconds the server spends receiving ``chunk`` ``repeat`` times on one websocket."""
    env = {
        **os.environ,
        "READ_SLICE": str(read_slice),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "WS4REDIS_TEST_OPTIONS": json.dumps({"connection": redis_url, "publish_rate": None}),
        "WS4REDIS_TEST_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE], env=env, cwd=ROOT / "tests",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        with RawClient(port, "/ws/bench?subscribe-broadcast", timeout=60) as client:
            client.send_raw(chunk)  # warm up
            time.sleep(0.5)
            before = cpu_seconds([proc.pid])
            for _ in range(repeat):
                client.send_raw(chunk)
            client.send_frame(PING, b"end")  # answered once everything before it was read
            while client.read_frame().opcode != PONG:
                pass
            return cpu_seconds([proc.pid]) - before
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from ws4redis_gevent.relay import READ_SLICE

    variants = {f"sliced ({READ_SLICE * 1000:.0f} ms)": READ_SLICE, "until empty": float("inf")}
    with RedisServer() as redis_server:
        for name, (chunk, repeat) in WORKLOADS.items():
            cpu: dict[str, list[float]] = {variant: [] for variant in variants}
            for _ in range(args.rounds):
                for variant, read_slice in variants.items():
                    cpu[variant].append(server_cpu(redis_server.url, read_slice, chunk, repeat))
            sliced, unsliced = (min(values) for values in cpu.values())
            figures = ", ".join(
                f"{variant} {' '.join(f'{v:.2f}' for v in values)} s"
                for variant, values in cpu.items()
            )
            print(f"{name}: server CPU {figures}; ratio sliced/until empty {sliced / unsliced:.2f}")


if __name__ == "__main__":
    main()
