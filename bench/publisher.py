"""The benchmark's publisher: PUBLISH straight to Redis over a raw socket, at a rate or flat out.

Each payload is ASCII text, ``"RUN SEQ TIMESTAMP_NS "`` padded with ``x`` to the message size
(or, with ``filler="json"``, with the text of a JSON document, as an application would send:
what compression makes of it is realistic),
where TIMESTAMP_NS is ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the clock of bench/wsclient.c)
taken when the message is sent. At a rate, message i leaves at ``start + i / rate`` whether or
not Redis has answered the previous ones (an open loop: a slow server shows as latency, not as
a slower publisher); flat out (rate 0), messages go in pipelined chunks, each chunk's replies
read before the next is sent.

Also a command: ``python bench/publisher.py PORT CHANNEL COUNT [RATE [SIZE [RUN]]]``.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

CHUNK = 64  # messages per pipelined write when publishing flat out


@dataclass
class PublishResult:
    """What one publishing run did; timestamps are CLOCK_MONOTONIC nanoseconds."""

    published: int
    first_send_ns: int
    last_send_ns: int
    receivers_min: int  # PUBLISH replies: how many subscribers Redis delivered each message to
    receivers_max: int

    @property
    def seconds(self) -> float:
        return (self.last_send_ns - self.first_send_ns) / 1e9


# A live-quotes update, as a dashboard would receive it: compresses about as JSON APIs do.
JSON_FILLER = json.dumps(
    {
        "type": "quotes",
        "market": "XETRA",
        "items": [
            {
                "id": 4711 + i,
                "symbol": f"SYM{i * 7 % 1000:03d}",
                "name": f"Company {i} AG",
                "price": round(100 + i * 1.37, 2),
                "change": round((i % 7 - 3) * 0.21, 2),
                "volume": 1000 + 37 * i,
                "updated": f"2026-12-04T15:{i % 60:02d}:{i * 13 % 60:02d}Z",
            }
            for i in range(200)
        ],
    }
).encode()


def payload(run: int, seq: int, size: int, filler: str = "x") -> bytes:
    head = f"{run} {seq} {time.monotonic_ns()} ".encode()
    if len(head) >= size:
        return head
    if filler == "json":
        return head + JSON_FILLER[: size - len(head)]
    return head + b"x" * (size - len(head))


def command(channel: bytes, data: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(data),
        data,
    )


class Publisher:
    """One Redis connection that publishes numbered, timestamped messages."""

    def __init__(self, host: str, port: int, name: str = "bench-publisher") -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        name_bytes = name.encode()
        self.sock.sendall(
            b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$%d\r\n%s\r\n" % (len(name_bytes), name_bytes)
        )
        if self._read_line() != b"+OK":
            raise ConnectionError("CLIENT SETNAME failed")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read_ready_counts(self) -> list[int]:
        """The replies to PUBLISH that arrived so far, without waiting for more."""
        while select.select([self.sock], [], [], 0)[0]:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self._buffer += data
        return self._read_counts(self._buffer.count(b"\r\n"))

    def _read_counts(self, count: int) -> list[int]:
        """Read ``count`` integer replies to PUBLISH."""
        counts = []
        for _ in range(count):
            line = self._read_line()
            if not line.startswith(b":"):
                raise ConnectionError(f"unexpected reply to PUBLISH: {line!r}")
            counts.append(int(line[1:]))
        return counts

    def publish(
        self,
        channel: str,
        count: int,
        rate: float = 0.0,
        size: int = 100,
        run: int = 0,
        filler: str = "x",
        wrap: Callable[[bytes], bytes] | None = None,
    ) -> PublishResult:
        """Publish ``count`` messages to ``channel`` at ``rate`` per second (0: flat out),
        padded with ``filler`` ("x" or "json"); ``wrap`` turns each payload into what is
        published (the Channels peer's events)."""
        encoded = channel.encode()
        make = payload if wrap is None else lambda *args: wrap(payload(*args))
        receivers: list[int] = []
        first = last = 0
        if rate > 0:
            interval_ns = int(1e9 / rate)
            start = time.monotonic_ns()
            for seq in range(count):
                wait = start + seq * interval_ns - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                first = first or time.monotonic_ns()
                self.sock.sendall(command(encoded, make(run, seq, size, filler)))
                last = time.monotonic_ns()
                # Open loop: the schedule does not wait for Redis' replies, read as they come.
                receivers.extend(self._read_ready_counts())
            receivers.extend(self._read_counts(count - len(receivers)))
        else:
            first = time.monotonic_ns()
            for base in range(0, count, CHUNK):
                batch = b"".join(
                    command(encoded, make(run, seq, size, filler))
                    for seq in range(base, min(base + CHUNK, count))
                )
                self.sock.sendall(batch)
                last = time.monotonic_ns()
                receivers.extend(self._read_counts(min(CHUNK, count - base)))
        return PublishResult(
            published=count,
            first_send_ns=first,
            last_send_ns=last,
            receivers_min=min(receivers, default=0),
            receivers_max=max(receivers, default=0),
        )


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    port, channel, count = int(argv[0]), argv[1], int(argv[2])
    rate = float(argv[3]) if len(argv) > 3 else 0.0
    size = int(argv[4]) if len(argv) > 4 else 100
    run = int(argv[5]) if len(argv) > 5 else 0
    with Publisher("127.0.0.1", port) as publisher:
        result = publisher.publish(channel, count, rate, size, run)
    print(json.dumps({**asdict(result), "seconds": result.seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
