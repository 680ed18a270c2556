"""The health endpoint (WS4REDIS_HEALTH_URL): 200 while this worker's hub is connected to Redis.

For load balancers: a worker whose hub has lost Redis receives no message for its websockets,
so it should get no new ones. The endpoint keeps one subscription of its own on the hub (an
internal channel nobody publishes on), so that the hub holds its Redis connection even while
no websocket is open, and reports the hub's state: connected from Redis' first subscription
reply until the connection is lost, and again once Redis confirms the resubscription.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .exceptions import ServiceUnavailable
from .hubs import get_hub
from .keys import health_channel
from .outgoing import Outgoing
from .settings import Settings

CHECK_TIMEOUT = 2.0


class _NoSink:
    """The health subscription's sink: nothing is ever published to its channel."""

    def deliver(self, message: Outgoing) -> bool:
        return False

    def flush(self) -> None:
        pass

    def resync_channel(self, channel: bytes) -> bool:
        return False


class HealthCheck:
    """A WSGI app answering 200 ``connected`` or 503 with the reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.channel = health_channel(settings.prefix).encode()
        self._sink = _NoSink()
        self._subscribed_in: int | None = None  # the pid (workers fork after it is built)

    def check(self) -> tuple[bool, str]:
        """Whether this worker's hub is connected to Redis, and why not."""
        hub = get_hub(self.settings.connection, self.settings.write_window / 1000)
        if self._subscribed_in != os.getpid():
            try:
                hub.subscribe([self.channel], self._sink, CHECK_TIMEOUT)
            except ServiceUnavailable as exc:
                return False, str(exc)
            self._subscribed_in = os.getpid()
        if hub.connected:
            return True, "connected"
        return False, "the hub is not connected to Redis"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        healthy, reason = self.check()
        status = "200 OK" if healthy else "503 Service Unavailable"
        body = f"{reason}\n".encode()
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]
