"""Websockets for Django and any WSGI app, served by gevent, fanned out through Redis pub/sub."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["WebsocketMiddleware", "configure"]

if TYPE_CHECKING:
    from .middleware import WebsocketMiddleware
    from .settings import configure


def __getattr__(name: str) -> Any:
    # Lazy, so that listing the Django app in INSTALLED_APPS imports neither gevent nor redis.
    if name == "WebsocketMiddleware":
        from .middleware import WebsocketMiddleware

        return WebsocketMiddleware
    if name == "configure":
        from .settings import configure

        return configure
    raise AttributeError(f"module 'ws4redis_gevent' has no attribute {name!r}")
