"""Test tools for projects using ws4redis-gevent (docs/testing.rst).

- ``capture_publishes()`` / ``PublishCapture`` (capture.py): what code publishes, recorded with
  no Redis server (fakeredis), for unit tests of views, tasks and signal handlers.
- ``LiveServer`` (live.py): the application served with websockets on a free port, under
  gevent, with a real Redis (``RedisServer``, redis_server.py: an embedded one, or a URL given
  explicitly); ``WebsocketClient`` (client.py), a small synchronous websocket client.
- Django test case mixins and classes: ``ws4redis_gevent.testing.django``.
- The pytest plugin (fixtures ``ws4redis_capture``, ``ws4redis_live_server``...):
  ``ws4redis_gevent.testing.pytest_plugin``, registered as an entry point.

Importing this package imports nothing else: neither Django, nor gevent, nor fakeredis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capture import CapturedMessage, PublishCapture, capture_publishes
    from .client import HandshakeRefused, WebsocketClient, WebsocketClosed
    from .live import LiveServer
    from .redis_server import RedisServer

_EXPORTS = {
    "CapturedMessage": "capture",
    "PublishCapture": "capture",
    "capture_publishes": "capture",
    "HandshakeRefused": "client",
    "WebsocketClient": "client",
    "WebsocketClosed": "client",
    "LiveServer": "live",
    "RedisServer": "redis_server",
}
__all__ = [
    "CapturedMessage",
    "HandshakeRefused",
    "LiveServer",
    "PublishCapture",
    "RedisServer",
    "WebsocketClient",
    "WebsocketClosed",
    "capture_publishes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ws4redis_gevent.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
