"""A redis-py subscriber in the test process: what really went through a Redis channel."""

from __future__ import annotations

import time
from typing import Any

import redis


class ChannelMonitor:
    """Subscribes to ``channels`` (confirmed before the constructor returns) and reads messages.

    Use as a context manager. Messages come back as ``(channel, payload)`` pairs of bytes.
    """

    def __init__(self, redis_url: str, *channels: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(*channels)
        confirmed = 0
        deadline = time.monotonic() + 5
        while confirmed < len(channels):
            reply = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if reply is None and time.monotonic() > deadline:
                raise AssertionError(f"Redis did not confirm the subscription to {channels}")
            if reply is not None and reply["type"] == "subscribe":
                confirmed += 1

    def next(self, timeout: float = 5.0) -> tuple[bytes, bytes]:
        """The next message published on the channels; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message on the monitored channels within {timeout}s")
            reply = self.pubsub.get_message(timeout=remaining)
            if reply is not None and reply["type"] == "message":
                return reply["channel"], reply["data"]

    def payloads(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The payloads of the next ``count`` messages."""
        return [self.next(timeout)[1] for _ in range(count)]

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()

    def __enter__(self) -> ChannelMonitor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
