"""WebsocketMiddleware: routes websocket requests under WEBSOCKET_URL, passes the rest on.

The steps of a websocket request, each a small method: route -> check handshake -> identify ->
authorise channels -> subscribe (and read persisted messages) -> upgrade -> relay -> tear down.
Every failure before the upgrade becomes an HTTP response in ``_refuse``; after the upgrade,
failures are close codes, handled by the relay.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import redis

from . import settings as settings_module
from .backends import Backend, select_backend
from .channels import ECHO_FLAG, parse_flags
from .exceptions import HandshakeError, PermissionDenied, ServiceUnavailable
from .handshake import check_handshake
from .identity import WebsocketRequest
from .relay import Outbox, Relay

logger = logging.getLogger("ws4redis_gevent")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebsocketMiddleware:
    """Serves websockets under WEBSOCKET_URL; every other request reaches ``app`` unchanged.

    Args:
        app: the WSGI application to wrap (e.g. Django's ``get_wsgi_application()``).
        **options: settings by their lower-case name without prefix (``websocket_url``,
            ``connection``, ``prefix``, ``expire``, ``heartbeat``, ``allowed_channels``...).
            They override Django's settings and become this process's settings, so
            ``RedisPublisher`` uses the same ones.
    """

    def __init__(self, app: WSGIApp, **options: Any) -> None:
        if options:
            settings_module.configure(**options)
        self.app = app
        self.settings = settings_module.load()
        self.prefix = self.settings.websocket_url
        self.allowed_channels = settings_module.resolve(self.settings.allowed_channels)
        self.subscriber_class = settings_module.resolve(self.settings.subscriber)
        self.uses_django = _django_configured()
        self.process_request = settings_module.resolve(self.settings.process_request)
        if self.process_request is None and self.uses_django:
            from .django_request import process_request

            self.process_request = process_request

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix):
            return self.app(environ, start_response)
        try:
            backend, headers, request, subscriber, outbox, persisted = self._prepare(environ)
        except HandshakeError as exc:
            return self._refuse(environ, start_response, exc)
        try:
            websocket = backend.upgrade(
                environ, start_response, headers, self.settings.max_message_size
            )
        except BaseException:
            subscriber.release()
            raise
        self._relay(websocket, request, subscriber, outbox, persisted)
        return []

    # -- before the upgrade ----------------------------------------------------------------

    def _prepare(self, environ: dict[str, Any]) -> tuple[Any, ...]:
        headers = check_handshake(environ)
        facility = environ.get("PATH_INFO", "")[len(self.prefix) :]
        if not facility:
            raise HandshakeError("no facility in the URL", HTTPStatus.NOT_FOUND)
        backend = self._backend(environ)
        try:
            request = self._identify(environ, facility)
            flags = self._authorise(request, parse_flags(environ.get("QUERY_STRING", "")))
        finally:
            if self.uses_django:
                from .django_request import close_database_connections

                close_database_connections()
        subscriber = self.subscriber_class(settings=self.settings)
        plan = subscriber.set_pubsub_channels(request, flags)
        if plan.dropped:
            logger.debug("dropped %s for an anonymous or sessionless client", plan.dropped)
        outbox = Outbox(self.settings.max_pending_messages)
        # Subscribe first and read the stored messages afterwards: a message published in
        # between is then delivered live rather than lost.
        subscriber.subscribe(outbox)
        try:
            persisted = subscriber.get_persisted_messages()
        except (redis.RedisError, OSError) as exc:
            subscriber.release()
            raise ServiceUnavailable(f"cannot read persisted messages: {exc}") from exc
        return backend, headers, request, subscriber, outbox, persisted

    def _backend(self, environ: dict[str, Any]) -> Backend:
        backend = select_backend(environ)
        if backend is None:
            logger.error(
                "websocket request to %s on a server that cannot upgrade (%s): run under "
                "gevent (ws4redis' runserver, gunicorn's GeventWebSocketWorker) or uWSGI",
                environ.get("PATH_INFO"),
                environ.get("SERVER_SOFTWARE", "unknown server"),
            )
            raise HandshakeError("this server cannot serve websockets", HTTPStatus.NOT_IMPLEMENTED)
        return backend

    def _identify(self, environ: dict[str, Any], facility: str) -> Any:
        if self.uses_django:
            from .django_request import make_request

            request = make_request(environ, facility)
        else:
            request = WebsocketRequest(environ, facility)
        if self.process_request is not None:
            self._guarded(self.process_request, request)
        return request

    def _authorise(self, request: Any, flags: list[str]) -> list[str]:
        if self.allowed_channels is None:
            return flags
        # As in ws4redis, the callback sees the subscribe/publish flags; echo is not a channel.
        echo = [flag for flag in flags if flag == ECHO_FLAG]
        channels = [flag for flag in flags if flag != ECHO_FLAG]
        allowed = self._guarded(self.allowed_channels, request, channels)
        if allowed is None:  # ws4redis' callbacks may only raise, or return nothing
            return flags
        # Flags the callback removed are dropped; it cannot add flags the client did not ask.
        allowed = set(allowed)
        return [flag for flag in channels if flag in allowed] + echo

    def _guarded(self, callback: Callable[..., Any], *args: Any) -> Any:
        try:
            return callback(*args)
        except HandshakeError:
            raise
        except Exception as exc:
            if _is_permission_denied(exc):
                raise PermissionDenied(str(exc) or "forbidden") from exc
            raise

    def _refuse(
        self, environ: dict[str, Any], start_response: Callable[..., Any], exc: HandshakeError
    ) -> list[bytes]:
        logger.info("refused websocket %s: %s", environ.get("PATH_INFO"), exc)
        body = f"{exc.status.value} {exc.status.phrase}: {exc.reason}\n".encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *exc.headers,
        ]
        start_response(f"{exc.status.value} {exc.status.phrase}", headers)
        return [body]

    # -- after the upgrade -----------------------------------------------------------------

    def _relay(
        self, websocket: Any, request: Any, subscriber: Any, outbox: Outbox, persisted: list[Any]
    ) -> None:
        outbox.put_first(persisted)
        outbox.attach(websocket)
        relay = Relay(
            websocket,
            outbox,
            subscriber,
            self.settings,
            echo=subscriber.plan.echo,
            subscribed=subscriber.subscribed_channels,
        )
        logger.info("WEBSOCKET %s connected %s", request.path, list(subscriber.plan.subscribe))
        try:
            relay.run()
        finally:
            subscriber.release()
            logger.info("WEBSOCKET %s closed (%s)", request.path, relay.close_code)


def _django_configured() -> bool:
    if "django.conf" not in sys.modules:
        return False
    from django.conf import settings

    return bool(settings.configured)


def _is_permission_denied(exc: Exception) -> bool:
    # Django's PermissionDenied, recognised without importing Django: if Django was never
    # imported, no callback can have raised it.
    django_exceptions = sys.modules.get("django.core.exceptions")
    return django_exceptions is not None and isinstance(exc, django_exceptions.PermissionDenied)
