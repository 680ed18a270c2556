"""Django system checks: broken websocket settings fail ``manage.py check``; unsafe ones are
reported by ``manage.py check --deploy``.

The documented ws4redis behaviour stays available (any client may publish, any origin may
connect...): these checks make its unsafe parts visible, they do not forbid them. Silence one
with ``SILENCED_SYSTEM_CHECKS = ["ws4redis_gevent.W003"]`` once it is a deliberate choice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Info, Tags, register
from django.core.checks import Warning as CheckWarning

from . import settings as settings_module
from .exceptions import ImproperlyConfigured
from .hosts import LOOPBACK_HOSTS, host_matches
from .origin import Origin, OriginPolicy

TAG = "ws4redis"
# Idle connections are cut by proxies after this long by default (nginx' proxy_read_timeout).
PROXY_IDLE_TIMEOUT = 60.0
LARGE_MESSAGE_SIZE = 16 << 20
_CALLABLE_SETTINGS = ("allowed_channels", "process_request", "subscriber")


def register_checks() -> None:
    """Register the checks (called by the app's ``ready``; registering twice is harmless)."""
    register(check_settings, TAG)
    register(check_server, TAG)
    register(check_deployment, Tags.security, TAG, deploy=True)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Errors: settings the middleware would refuse when it is built."""
    try:
        current = settings_module.load()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="ws4redis_gevent.E001")]
    errors: list[CheckMessage] = []
    default = settings_module.Settings()
    for option in _CALLABLE_SETTINGS:
        value = getattr(current, option)
        # The default subscriber is not imported here: it would import gevent and redis into
        # every management command.
        if isinstance(value, str) and value != getattr(default, option):
            try:
                settings_module.import_string(value)
            except ImproperlyConfigured as exc:
                name = settings_module.django_name(option)
                errors.append(Error(f"{name}: {exc}", id="ws4redis_gevent.E002"))
    try:
        OriginPolicy.build(current.allowed_origins)
    except ImproperlyConfigured as exc:
        errors.append(Error(str(exc), id="ws4redis_gevent.E003"))
    return errors


def check_server(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Info: the deployment names gevent-websocket's handler, the second-best server."""
    where = _geventwebsocket_named()
    if where is None:
        return []
    return [
        Info(
            f"{where} names gevent-websocket's handler: websockets work there, but it is the "
            "second-best server. It answers 101 before Django runs, so a refused websocket "
            "gets a close code instead of an HTTP status (403 -> 1008, 503 -> 1013), and the "
            "browser sees the websocket open before it is subscribed: a message published at "
            "that moment is missed.",
            hint="Serve with gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker (or "
            "uWSGI); see docs/deployment.rst, 'gevent-websocket'.",
            id="ws4redis_gevent.I001",
        )
    ]


def _geventwebsocket_named() -> str | None:
    # Where a deployment visible from here chooses gevent-websocket's handler: the backend
    # setting, gunicorn's command-line variable, or a gunicorn.conf.py in the current directory.
    try:
        if settings_module.load().backend == "geventwebsocket":
            return "WS4REDIS_BACKEND"
    except ImproperlyConfigured:
        pass
    if "geventwebsocket" in os.environ.get("GUNICORN_CMD_ARGS", ""):
        return "GUNICORN_CMD_ARGS"
    config = Path("gunicorn.conf.py")
    try:
        if "geventwebsocket" in config.read_text(errors="replace"):
            return str(config.resolve())
    except OSError:
        pass
    return None


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warnings: settings that leave websockets open to abuse or silent failures."""
    try:
        current = settings_module.load()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    warnings = _origin_warnings(current) + _host_warnings(current) + _abuse_warnings(current)
    return warnings + _redis_growth_warnings(current) + _keepalive_warnings(current)


def _origin_warnings(current: settings_module.Settings) -> list[CheckMessage]:
    if not current.check_origin:
        return [
            CheckWarning(
                "WS4REDIS_CHECK_ORIGIN is off: any website can open websockets to this server "
                "with its visitors' cookies (cross-site websocket hijacking).",
                hint="Remove WS4REDIS_CHECK_ORIGIN = False; list the sites that may connect "
                "in WS4REDIS_ALLOWED_ORIGINS.",
                id="ws4redis_gevent.W001",
            )
        ]
    if current.allowed_origins and "*" in current.allowed_origins:
        return [
            CheckWarning(
                "WS4REDIS_ALLOWED_ORIGINS contains '*': any website can open websockets to "
                "this server with its visitors' cookies (cross-site websocket hijacking).",
                hint="List the origins that may connect, e.g. 'https://app.example.com'.",
                id="ws4redis_gevent.W002",
            )
        ]
    return []


def _host_warnings(current: settings_module.Settings) -> list[CheckMessage]:
    from .django_hosts import host_policy

    warnings: list[CheckMessage] = []
    try:
        policy = host_policy(current.allowed_hosts)
    except ImproperlyConfigured:
        return []  # Django reports a malformed ALLOWED_HOSTS itself
    if "*" in policy.allowed_hosts:
        warnings.append(
            CheckWarning(
                f"{policy.setting} contains '*': websockets are served for any Host header, "
                "so through DNS rebinding any website can open websockets to this server "
                "(its pages then count as same-origin).",
                hint=f"List the host names the site serves in {policy.setting}.",
                id="ws4redis_gevent.W012",
            )
        )
    plain = [origin for origin in _parsed_origins(current) if _is_plain_http(origin)]
    if plain:
        warnings.append(
            CheckWarning(
                "WS4REDIS_ALLOWED_ORIGINS lists pages served without TLS "
                f"({', '.join(map(str, plain))}): anyone on their network path can change "
                "them and use your users' websockets.",
                hint="List their https:// origins instead.",
                id="ws4redis_gevent.W013",
            )
        )
    return warnings


def _parsed_origins(current: settings_module.Settings) -> list[Origin]:
    try:
        return sorted(OriginPolicy.build(current.allowed_origins).origins, key=str)
    except ImproperlyConfigured:
        return []  # reported by check_settings


def _is_plain_http(origin: Origin) -> bool:
    return origin.scheme == "http" and not host_matches(origin.host, LOOPBACK_HOSTS)


def _abuse_warnings(current: settings_module.Settings) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if current.allowed_channels is None:
        warnings.append(
            CheckWarning(
                "WS4REDIS_ALLOWED_CHANNELS is not set: every client, anonymous ones included, "
                "may use the publish-* flags, e.g. publish-broadcast sends its messages to "
                "every subscriber of any facility.",
                hint="Set WS4REDIS_ALLOWED_CHANNELS to a function that removes the flags a "
                "request may not use (or raises PermissionDenied).",
                id="ws4redis_gevent.W003",
            )
        )
    unlimited = [
        (current.max_connections is None, "MAX_CONNECTIONS", "websockets per worker", "W004"),
        (current.publish_rate is None, "PUBLISH_RATE", "messages a client publishes", "W005"),
        (current.ping_rate is None, "PING_RATE", "pings and heartbeats a client sends", "W014"),
        (
            current.publish_bytes_rate is None,
            "PUBLISH_BYTES_RATE",
            "bytes a client publishes (Redis cuts off a hub it outpaces)",
            "W015",
        ),
        (
            not current.handshake_timeout or current.handshake_timeout <= 0,
            "HANDSHAKE_TIMEOUT",
            "time a client may take to send its handshake",
            "W006",
        ),
    ]
    for unset, option, what, code in unlimited:
        name = f"WS4REDIS_{option}"
        if unset:
            warnings.append(
                CheckWarning(
                    f"{name} is off: nothing limits the {what}, so one client can exhaust "
                    "the worker.",
                    hint=f"Give {name} a value (see the settings reference).",
                    id=f"ws4redis_gevent.{code}",
                )
            )
    if current.max_message_size > LARGE_MESSAGE_SIZE:
        warnings.append(
            CheckWarning(
                f"WS4REDIS_MAX_MESSAGE_SIZE is {current.max_message_size} bytes: each client "
                "can make the worker buffer that much, and every subscriber receive it.",
                hint=f"Keep it at most {LARGE_MESSAGE_SIZE} bytes unless you need more.",
                id="ws4redis_gevent.W007",
            )
        )
    return warnings


def _redis_growth_warnings(current: settings_module.Settings) -> list[CheckMessage]:
    # Every facility name a client makes up can leave keys in Redis: a stored message (with
    # publish flags), a history stream. WS4REDIS_FACILITIES bounds the names when it lists
    # names only: a pattern ("room-*") lets clients invent as many as they like.
    if current.facilities is not None and not any(
        char in name for name in current.facilities for char in "*?["
    ):
        return []
    warnings: list[CheckMessage] = []
    if current.allowed_channels is None and current.expire > 0:
        warnings.append(
            CheckWarning(
                "WS4REDIS_FACILITIES is not set (or has patterns) and clients may publish: "
                "every facility name a client makes up keeps a stored message of up to "
                f"{current.max_message_size} bytes in Redis for {current.expire} s, so Redis "
                "grows with the names clients invent.",
                hint="List the facilities by name in WS4REDIS_FACILITIES, or restrict "
                "publishing with WS4REDIS_ALLOWED_CHANNELS.",
                id="ws4redis_gevent.W010",
            )
        )
    if current.history and "*" in current.history:
        warnings.append(
            CheckWarning(
                "WS4REDIS_HISTORY has '*' and WS4REDIS_FACILITIES is not set (or has "
                "patterns): every facility name a client makes up can get a history stream "
                "in Redis.",
                hint="Name the facilities that keep history, or set WS4REDIS_FACILITIES.",
                id="ws4redis_gevent.W011",
            )
        )
    return warnings


def _keepalive_warnings(current: settings_module.Settings) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if _behind_proxy() and not current.heartbeat:
        warnings.append(
            CheckWarning(
                "This site runs behind a proxy and WS4REDIS_HEARTBEAT is not set: a browser "
                "cannot tell a websocket the proxy dropped silently from a quiet one, and "
                "stops receiving without reconnecting.",
                hint="Set WS4REDIS_HEARTBEAT (e.g. '--heartbeat--') and give the same text "
                "to the JavaScript client.",
                id="ws4redis_gevent.W008",
            )
        )
    if not current.ping_interval or current.ping_interval >= PROXY_IDLE_TIMEOUT:
        warnings.append(
            CheckWarning(
                f"WS4REDIS_PING_INTERVAL is {current.ping_interval}: quiet websockets are cut "
                f"by proxies that drop idle connections after {PROXY_IDLE_TIMEOUT:.0f} s "
                "(nginx' default), and dead clients are found late.",
                hint=f"Keep it under {PROXY_IDLE_TIMEOUT:.0f} seconds (default 20).",
                id="ws4redis_gevent.W009",
            )
        )
    return warnings


def _behind_proxy() -> bool:
    return bool(
        getattr(django_settings, "SECURE_PROXY_SSL_HEADER", None)
        or getattr(django_settings, "USE_X_FORWARDED_HOST", False)
        or getattr(django_settings, "USE_X_FORWARDED_PORT", False)
    )
