"""The seam between the core and a framework: what a framework adapter hands the core.

The core (middleware, settings) imports no framework. A framework's adapter (for Django:
``django_adapter``, installed by the Django app ``ws4redis_gevent`` when Django starts) registers
an ``Integration`` here: where settings come from, how a request object is made, how to tell a
refusal, how Host headers are checked. The middleware reads it when it is built, as whitenoise's
Django middleware hands its WSGI core plain options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .hosts import HostPolicy


@dataclass(frozen=True)
class Integration:
    """What a framework provides to the core; every field is optional."""

    name: str
    # Options (lower-case names, no prefix) from the framework's settings; read at each load().
    options: Callable[[], dict[str, Any]] = field(default=lambda: {})
    # Builds the request object callbacks receive, from the environ and the facility.
    make_request: Callable[[dict[str, Any], str], Any] | None = None
    # Identifies the client (sets user and session) when WS4REDIS_PROCESS_REQUEST is not set.
    process_request: Callable[[Any], None] | None = None
    # Called after identifying: release what identifying opened (database connections).
    close_connections: Callable[[], None] | None = None
    # The Host check (and scheme) for websocket requests, given WS4REDIS_ALLOWED_HOSTS.
    host_policy: Callable[[Any], HostPolicy] | None = None
    # Exceptions of the framework that mean 403 when a callback raises them.
    permission_denied: tuple[type[BaseException], ...] = ()
    # The module of this framework's testing tools (``live_server(app, redis)``,
    # ``redis_for(url)``), which ws4redis_gevent.testing's pytest plugin uses; a dotted path,
    # so that neither the adapter nor the plugin imports the other's side before it is needed.
    testing: str | None = None


_current: Integration | None = None


def install(integration: Integration) -> None:
    """Make ``integration`` the process's framework (the last one installed wins)."""
    global _current
    _current = integration


def uninstall() -> None:
    """Forget the installed integration (for tests)."""
    global _current
    _current = None


def current() -> Integration | None:
    """The installed integration, or None for a plain WSGI application."""
    return _current
