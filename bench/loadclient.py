"""Driving bench/wsclient.c: building it, talking to it, merging what its processes report."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / ".build"
CONCURRENCY = 100  # connections being opened at once (handshakes in flight)
CONNECT_TIMEOUT = 60.0


def build_client() -> Path:
    """Compile bench/wsclient.c with -O2 into bench/.build/ (again when the source is newer)."""
    source = BENCH / "wsclient.c"
    binary = BUILD / "wsclient"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("fanout: no C compiler (cc or gcc) to build bench/wsclient.c")
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = BUILD / f"wsclient.{os.getpid()}.tmp"
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(tmp), str(source), "-lz"], check=True)
    tmp.replace(binary)  # atomic: a concurrent run never executes half a binary
    return binary


class LineReader:
    """Lines from a child's stdout, with a timeout (the child flushes whole lines)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"wsclient said nothing within {timeout:.0f}s")
            if select.select([self.fd], [], [], left)[0]:
                data = os.read(self.fd, 65536)
                if not data:
                    raise RuntimeError(f"wsclient exited with status {self.proc.wait()}")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


class LoadClient:
    """One wsclient process holding ``conns`` connections, in ``ws`` or ``redis`` mode."""

    def __init__(self, binary: Path, mode: str, port: int, conns: int, extra: Sequence[str]):
        args = [
            str(binary), mode,
            "--port", str(port),
            "--conns", str(conns),
            "--concurrency", str(CONCURRENCY),
            "--connect-timeout", str(CONNECT_TIMEOUT),
            *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.reader = LineReader(self.proc)

    def ready(self, timeout: float = CONNECT_TIMEOUT + 30) -> dict[str, Any]:
        """Wait until every connection is open (or failed): the READY report."""
        line = self.reader.readline(timeout)
        if not line.startswith("READY "):
            raise RuntimeError(f"wsclient said {line!r} instead of READY")
        return json.loads(line.removeprefix("READY "))

    def start_run(self, run_id: int, messages: int, timeout: float) -> None:
        """Count run ``run_id``'s messages until each connection has ``messages`` of them."""
        self._send(f"RUN {run_id} {messages} {timeout:.3f}")

    def hello(self) -> None:
        """(--deflate) Have every open websocket send one compressed message."""
        self._send("HELLO")

    def result(self, timeout: float) -> dict[str, Any]:
        """The report of the run started last."""
        return json.loads(self.reader.readline(timeout))

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._send("QUIT")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_handshakes(
    binary: Path, port: int, count: int, path: str, cookie: str | None = None
) -> dict[str, Any]:
    """``count`` websocket handshakes, CONCURRENCY in flight, each closed after its 101."""
    args = [
        str(binary), "handshake",
        "--port", str(port),
        "--count", str(count),
        "--concurrency", str(CONCURRENCY),
        "--connect-timeout", str(CONNECT_TIMEOUT),
        "--path", path,
    ]  # fmt: skip
    if cookie:
        args += ["--cookie", cookie]
    out = subprocess.run(args, stdout=subprocess.PIPE, check=True, timeout=CONNECT_TIMEOUT + 60)
    return json.loads(out.stdout)


def split(total: int, parts: int) -> list[int]:
    """``total`` connections shared out over ``parts`` processes."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def merged_latency(reports: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Latency percentiles (us) over the histograms of several client processes.

    Every wsclient uses the same buckets, each reported by its highest value, so merging is
    adding counts; a percentile is the bucket where the cumulative count reaches its rank.
    """
    buckets: dict[float, int] = {}
    for report in reports:
        for high, count in report["hist"]:
            buckets[high] = buckets.get(high, 0) + count
    total = sum(buckets.values())
    top = max((r["latency_us"]["max"] for r in reports), default=0.0)
    weighted = sum(r["latency_us"]["mean"] * r["latency_us"]["count"] for r in reports)
    merged: dict[str, float] = {"count": total, "mean": round(weighted / total, 1) if total else 0}
    ordered = sorted(buckets.items())
    for name, pct in PERCENTILES:
        rank, seen, value = max(1, round(pct / 100 * total)), 0, 0.0
        for high, count in ordered:
            seen += count
            if seen >= rank:
                value = min(high, top)
                break
        merged[name] = round(value, 1)
    merged["max"] = top
    return merged
