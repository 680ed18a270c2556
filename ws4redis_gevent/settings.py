"""Settings: defaults, the framework's settings (Django's, see integration.py), then options.

Settings are read when a middleware or publisher is built, never at import, so Django's
``override_settings`` works. A plain WSGI app passes options to ``WebsocketMiddleware`` or calls
``configure()``; those options become the process's settings, used by ``RedisPublisher`` too.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from . import integration
from .exceptions import ImproperlyConfigured
from .hosts import check_host_list

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_MAX_PENDING_BYTES = 8 << 20
COMPRESSION_DEFAULT = True
MAX_WRITE_WINDOW = 1000  # ms: a longer wait before writing is a mistake, not a tuning


@dataclass(frozen=True)
class Settings:
    """Every setting, with ws4redis' defaults; see docs/settings.rst for each one."""

    websocket_url: str = "/ws/"
    connection: dict[str, Any] | str = dataclasses.field(default_factory=dict)
    prefix: str | None = None
    expire: int = 3600
    heartbeat: str | None = None
    heartbeat_interval: float = 30.0
    allowed_channels: Callable[..., Any] | str | None = None
    process_request: Callable[..., Any] | str | None = None
    subscriber: type | str = "ws4redis_gevent.subscriber.RedisSubscriber"
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    subscribe_timeout: float | None = 5.0
    backend: str | None = None
    max_pending_messages: int = 1000
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    publish_rate: float | None = 50.0
    publish_burst: int = 100
    publish_bytes_rate: int | None = 1 << 20
    ping_rate: float | None = 10.0
    ping_burst: int = 50
    check_origin: bool = True
    allowed_origins: tuple[str, ...] | list[str] | None = None
    allowed_hosts: tuple[str, ...] | list[str] | None = None
    allow_missing_origin: bool = True
    max_connections: int | None = 10000
    handshake_timeout: float | None = 10.0
    history: dict[str, dict[str, int]] | None = None
    max_facility_length: int = 128
    facilities: tuple[str, ...] | list[str] | None = None
    metrics: bool = False
    metrics_url: str | None = None
    health_url: str | None = None
    log_user: bool = True
    presence: dict[str, dict[str, float]] | str | None = None
    compression: bool = COMPRESSION_DEFAULT
    compression_window_bits: int = 12
    write_window: float = 0.0

    def __post_init__(self) -> None:
        url = self.websocket_url
        if not isinstance(url, str) or not url.startswith("/") or not url.endswith("/"):
            raise ImproperlyConfigured("WEBSOCKET_URL must start and end with '/'")
        if self.max_message_size <= 0:
            raise ImproperlyConfigured("WS4REDIS_MAX_MESSAGE_SIZE must be positive")
        # Intervals and limits of 0 or less would make timers fire in a loop, close every
        # websocket at once or refuse every message: refused here, with the setting's name.
        for name in _POSITIVE:
            _check_positive(name, getattr(self, name))
        for name in _POSITIVE_OR_NONE:
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.heartbeat:
            _check_positive("heartbeat_interval", self.heartbeat_interval)
        for name in _BURSTS:
            # A bucket that never holds a whole token would refuse everything.
            value = getattr(self, name)
            if not _is_number(value) or value < 1:
                raise ImproperlyConfigured(f"{django_name(name)} must be at least 1, not {value!r}")
        if self.handshake_timeout is not None and not _is_number(self.handshake_timeout):
            raise ImproperlyConfigured("WS4REDIS_HANDSHAKE_TIMEOUT: seconds, or 0 or None (off)")
        if self.facilities is not None and (
            isinstance(self.facilities, str)
            or not all(isinstance(name, str) and name for name in self.facilities)
        ):
            raise ImproperlyConfigured(
                "WS4REDIS_FACILITIES: a list of facility names or patterns ('chat-*'), or None"
            )
        if self.allowed_hosts is not None:
            check_host_list("WS4REDIS_ALLOWED_HOSTS", self.allowed_hosts)
        for name in ("metrics_url", "health_url"):
            url = getattr(self, name)
            if url is not None and (not isinstance(url, str) or not url.startswith("/")):
                raise ImproperlyConfigured(f"{django_name(name)} must be None or a path ('/...')")
        if self.metrics_url is not None and not self.metrics:
            raise ImproperlyConfigured("WS4REDIS_METRICS_URL needs WS4REDIS_METRICS = True")
        _check_presence(self.presence)
        if not isinstance(self.compression, bool):
            raise ImproperlyConfigured("WS4REDIS_COMPRESSION must be True or False")
        bits = self.compression_window_bits
        if not isinstance(bits, int) or isinstance(bits, bool) or not 8 <= bits <= 15:
            raise ImproperlyConfigured(
                f"WS4REDIS_COMPRESSION_WINDOW_BITS must be an integer from 8 to 15, not {bits!r}"
            )
        if not _is_number(self.write_window) or not 0 <= self.write_window <= MAX_WRITE_WINDOW:
            raise ImproperlyConfigured(
                f"WS4REDIS_WRITE_WINDOW: milliseconds from 0 (off) to {MAX_WRITE_WINDOW}, "
                f"not {self.write_window!r}"
            )
        if self.backend not in _BACKEND_NAMES and "." not in str(self.backend):
            raise ImproperlyConfigured(
                "WS4REDIS_BACKEND: 'gevent', 'uwsgi', 'geventwebsocket' or a dotted path"
            )

    def replace(self, **options: Any) -> Settings:
        """A copy with ``options`` applied; unknown names raise ImproperlyConfigured."""
        unknown = set(options) - {f.name for f in fields(self)}
        if unknown:
            raise ImproperlyConfigured(f"unknown ws4redis option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **options)


_POSITIVE = (
    "ping_interval",
    "ping_timeout",
    "max_pending_messages",
    "max_pending_bytes",
    "max_facility_length",
)
_BACKEND_NAMES = (None, "gevent", "uwsgi", "geventwebsocket")  # backends.BACKENDS' names
# None turns these off (no rate limit, no connection limit, waiting for Redis without a limit).
_POSITIVE_OR_NONE = (
    "publish_rate",
    "publish_bytes_rate",
    "ping_rate",
    "max_connections",
    "subscribe_timeout",
)
_BURSTS = ("publish_burst", "ping_burst")


_PRESENCE_OPTIONS = ("ttl", "events_interval")


def _check_presence(setting: Any) -> None:
    # None, "*", or {facility or "*": {"ttl": seconds, "events_interval": seconds}}.
    if setting is None or setting == "*":
        return
    usage = 'WS4REDIS_PRESENCE: "*", or {"facility": {"ttl": 30, "events_interval": 1.0}}'
    if not isinstance(setting, dict):
        raise ImproperlyConfigured(f"{usage}, not {setting!r}")
    for facility, options in setting.items():
        if not isinstance(facility, str) or not isinstance(options, dict):
            raise ImproperlyConfigured(f"{usage}; got {facility!r}: {options!r}")
        unknown = set(options) - set(_PRESENCE_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(f"{usage}; unknown option(s) {sorted(unknown)}")
        for name in _PRESENCE_OPTIONS:
            value = options.get(name, 1.0)
            if not _is_number(value) or not value > 0:
                raise ImproperlyConfigured(
                    f"WS4REDIS_PRESENCE[{facility!r}][{name!r}] must be a positive number"
                )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(name: str, value: Any) -> None:
    if not _is_number(value) or not value > 0:
        raise ImproperlyConfigured(f"{django_name(name)} must be a positive number, not {value!r}")


def django_name(option: str) -> str:
    """The Django setting for an option: WEBSOCKET_URL, or WS4REDIS_ followed by its name."""
    return "WEBSOCKET_URL" if option == "websocket_url" else f"WS4REDIS_{option.upper()}"


_configured: dict[str, Any] = {}


def configure(**options: Any) -> None:
    """Set options for this process, used by every middleware and publisher built afterwards."""
    Settings().replace(**options)  # validate names and values now
    _configured.update(options)


def reset() -> None:
    """Forget options given to configure() (for tests)."""
    _configured.clear()


def load(**options: Any) -> Settings:
    """Build the settings now: defaults, then the framework's (Django's, through its adapter),
    then configure()'s, then ``options``."""
    adapter = integration.current()
    framework = adapter.options() if adapter is not None else {}
    return Settings().replace(**{**framework, **_configured, **options})


def import_string(dotted_path: str) -> Any:
    """Import ``package.module.name`` and return ``name``."""
    module_path, _, name = dotted_path.rpartition(".")
    if not module_path:
        raise ImproperlyConfigured(f"{dotted_path!r} is not a dotted path")
    try:
        return getattr(importlib.import_module(module_path), name)
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(f"cannot import {dotted_path!r}: {exc}") from exc


def resolve(value: Any) -> Any:
    """A callable or class given directly, or by dotted path; None stays None."""
    return import_string(value) if isinstance(value, str) else value
