"""WebsocketMiddleware: routes websocket requests under WEBSOCKET_URL, passes the rest on.

The steps of a websocket request, each a small method: route -> check handshake -> identify ->
authorise channels -> subscribe (and read persisted messages) -> upgrade -> relay -> tear down.
Every failure before the upgrade becomes an HTTP response in ``_refuse``; after the upgrade,
failures are close codes, handled by the relay.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import redis

from . import integration, stats
from . import settings as settings_module
from .backends import Backend, refuse_after_upgrade, select_backend
from .channels import MODE_FLAGS, PRESENCE_FLAG, RECOVER_FLAG, parse_flags, parse_since
from .deflate import DeflateParams, negotiate
from .exceptions import HandshakeError, PermissionDenied, ServiceUnavailable
from .handshake import check_handshake
from .hosts import LOOPBACK_HOSTS, HostPolicy
from .hubs import on_connection_lost
from .identity import WebsocketRequest, identity_from_request
from .keys import InvalidName, check_facility, loggable
from .origin import OriginPolicy
from .relay import Outbox, Relay, announce_resync
from .subscriber import RedisSubscriber

logger = logging.getLogger("ws4redis_gevent")
# One line per websocket end (see _log_end); nothing per message.
end_logger = logging.getLogger("ws4redis_gevent.websockets")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebsocketMiddleware:
    """Serves websockets under WEBSOCKET_URL; every other request reaches ``app`` unchanged.

    Args:
        app: the WSGI application to wrap (e.g. Django's ``get_wsgi_application()``).
        **options: settings by their lower-case name without prefix (``websocket_url``,
            ``connection``, ``prefix``, ``expire``, ``heartbeat``, ``allowed_channels``,
            ``allowed_hosts``: the Host names served, loopback names by default...).
            They override Django's settings and become this process's settings, so
            ``RedisPublisher`` uses the same ones.
    """

    def __init__(self, app: WSGIApp, **options: Any) -> None:
        if options:
            settings_module.configure(**options)
        self.app = app
        self.reload_settings()

    def reload_settings(self) -> None:
        """Read the settings again (they are read when the middleware is built): for tools that
        change them afterwards, such as the test tools' live server."""
        self.settings = settings_module.load()
        self.prefix = self.settings.websocket_url
        self.allowed_channels = settings_module.resolve(self.settings.allowed_channels)
        self.subscriber_class = settings_module.resolve(self.settings.subscriber)
        # A framework's adapter (Django's, installed by its app) hands over its parts here.
        framework = integration.current()
        self.uses_django = framework is not None and framework.name == "django"
        self.process_request = settings_module.resolve(self.settings.process_request)
        self.make_request = framework.make_request if framework else None
        self.close_connections = framework.close_connections if framework else None
        if self.process_request is None and framework is not None:
            self.process_request = framework.process_request
        self.permission_denied = framework.permission_denied if framework else ()
        self.facilities = _facility_matcher(self.settings.facilities)
        on_connection_lost(announce_resync)
        self.host_policy = _host_policy(self.settings, framework)
        uses_framework_hosts = framework is not None and framework.host_policy is not None
        self.origin_policy = _origin_policy(self.settings, self.host_policy, uses_framework_hosts)
        self.endpoints = _endpoints(self.settings)

    def _endpoint(self, path: str) -> WSGIApp | None:
        return self.endpoints.get(path) if self.endpoints else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.settings.metrics:
            _start_metrics()  # once per worker process: what its requests publish counts too
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix):
            endpoint = self._endpoint(path)
            if endpoint is not None:
                return endpoint(environ, start_response)
            return self.app(environ, start_response)
        # Counted from the handshake to the end of the relay: websockets being opened count.
        if not _websockets.enter(self.settings.max_connections):
            return self._refuse(environ, start_response, _too_many())
        handed_over = False
        try:
            result, handed_over = self._serve(environ, start_response)
            return result
        finally:
            if not handed_over:
                _websockets.leave()

    def _serve(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> tuple[Any, bool]:
        # The response, and whether the websocket lives on after this request returns.
        try:
            backend, headers, request, subscriber, outbox, persisted = self._prepare(environ)
        except HandshakeError as exc:
            return self._refuse(environ, start_response, exc), False
        deflate = self._negotiate_deflate(environ, headers)
        if deflate is not None:
            outbox.window_bits = deflate.server_max_window_bits
        try:
            websocket = backend.upgrade(
                environ, start_response, headers, self.settings.max_message_size, deflate
            )
        except BaseException:
            subscriber.release()
            raise
        stats.STATS.handshakes[101] += 1
        return [], self._relay(websocket, request, subscriber, outbox, persisted, backend.name)

    # -- before the upgrade ----------------------------------------------------------------

    def _prepare(self, environ: dict[str, Any]) -> tuple[Any, ...]:
        headers = check_handshake(environ)
        self._check_host_and_origin(environ)
        facility = self._facility(environ)
        backend = self._backend(environ)
        try:
            request = self._identify(environ, facility)
            flags = self._authorise(request, parse_flags(environ.get("QUERY_STRING", "")))
        finally:
            if self.close_connections is not None:
                self.close_connections()
        subscriber = self.subscriber_class(settings=self.settings)
        plan = subscriber.set_pubsub_channels(request, flags)
        if plan.dropped:
            logger.debug("dropped %s for an anonymous or sessionless client", plan.dropped)
        outbox = Outbox(self.settings.max_pending_messages, self.settings.max_pending_bytes)
        recovering = RECOVER_FLAG in flags
        if recovering or PRESENCE_FLAG in flags:
            # Tagged frames, which presence frames (``!presence LABEL``) cannot be mistaken for.
            outbox.labels = _frame_labels(subscriber, plan)
        # Subscribe first and read the stored messages afterwards: a message published in
        # between is then delivered live rather than lost.
        subscriber.subscribe(outbox)
        try:
            if recovering:
                since = parse_since(environ.get("QUERY_STRING", ""))
                initial, skip = subscriber.get_recovery_messages(since)
            else:
                initial, skip = subscriber.get_persisted_messages(), None
            if isinstance(subscriber, RedisSubscriber):
                initial = subscriber.get_presence_frames() + initial
        except (redis.RedisError, OSError) as exc:
            subscriber.release()
            raise ServiceUnavailable(f"cannot read stored messages: {exc}") from exc
        except BaseException:
            subscriber.release()  # whatever failed, no subscription outlives the handshake
            raise
        return backend, headers, request, subscriber, outbox, (initial, skip)

    def _negotiate_deflate(
        self, environ: dict[str, Any], headers: list[tuple[str, str]]
    ) -> DeflateParams | None:
        """permessage-deflate, when on and offered: its response header goes into ``headers``."""
        if not self.settings.compression or environ.get("wsgi.websocket") is not None:
            # Off, or the server upgraded already (gevent-websocket's handler): its 101 went
            # out without the extension, so the client does not expect compressed frames.
            return None
        offers = environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")
        params = negotiate(offers, self.settings.compression_window_bits)
        if params is not None:
            headers.append(("Sec-WebSocket-Extensions", params.response))
        return params

    def _facility(self, environ: dict[str, Any]) -> str:
        facility = _facility(environ.get("PATH_INFO", "")[len(self.prefix) :])
        if not facility:
            raise HandshakeError("no facility in the URL", HTTPStatus.NOT_FOUND)
        try:
            check_facility(facility, self.settings.max_facility_length)
        except InvalidName as exc:
            raise HandshakeError(str(exc)) from exc
        if self.facilities is not None and not self.facilities(facility):
            raise HandshakeError(f"unknown facility {facility!r}", HTTPStatus.NOT_FOUND)
        return facility

    def _check_host_and_origin(self, environ: dict[str, Any]) -> None:
        host = self.host_policy.host(environ)
        refusal = self.host_policy.refusal(host)
        if refusal is not None:
            raise HandshakeError(refusal)
        if self.origin_policy is None:
            return
        scheme = self.host_policy.scheme(environ)
        refusal = self.origin_policy.refusal(environ.get("HTTP_ORIGIN"), host, scheme)
        if refusal is not None:
            hosts = self.host_policy.setting
            raise PermissionDenied(f"{refusal}: list it in WS4REDIS_ALLOWED_ORIGINS (or {hosts})")

    def _backend(self, environ: dict[str, Any]) -> Backend:
        backend = select_backend(environ, self.settings.backend)
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
        if self.make_request is not None:
            request = self.make_request(environ, facility)
        else:
            request = WebsocketRequest(environ, facility)
        if self.process_request is not None:
            self._guarded(self.process_request, request)
        return request

    def _authorise(self, request: Any, flags: list[str]) -> list[str]:
        if self.allowed_channels is None:
            return flags
        # As in ws4redis, the callback sees the subscribe/publish flags; echo is not a channel.
        echo = [flag for flag in flags if flag in MODE_FLAGS]
        channels = [flag for flag in flags if flag not in MODE_FLAGS]
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
            if isinstance(exc, self.permission_denied):
                raise PermissionDenied(str(exc) or "forbidden") from exc
            raise

    def _refuse(
        self, environ: dict[str, Any], start_response: Callable[..., Any], exc: HandshakeError
    ) -> list[bytes]:
        stats.STATS.handshakes[exc.status.value] += 1
        logger.info("refused websocket %s: %s", environ.get("PATH_INFO"), exc)
        if refuse_after_upgrade(environ, exc):
            return []  # the server had upgraded already: a close frame was sent instead
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
        self,
        websocket: Any,
        request: Any,
        subscriber: Any,
        outbox: Outbox,
        persisted: list[Any],
        backend: str = "",
    ) -> bool:
        """Relay the websocket; True when it was handed over to the event loop (served with no
        greenlet while idle, after this request returns), False once it has ended."""
        outbox.put_first(*persisted)
        outbox.attach(websocket)
        relay = Relay(
            websocket,
            outbox,
            subscriber,
            self.settings,
            echo=subscriber.plan.echo,
            subscribed=subscriber.subscribed_channels,
        )
        if logger.isEnabledFor(logging.INFO):
            channels = [loggable(channel) for channel in subscriber.plan.subscribe]
            logger.info("WEBSOCKET %s connected %s", request.path, channels)
        path = request.path  # the request itself is not kept
        user = identity_from_request(request).user if self.settings.log_user else None
        stats.STATS.open_by_backend[backend] += 1

        def ended() -> None:
            stats.STATS.open_by_backend[backend] -= 1
            subscriber.release()
            _log_end(path, relay, user)

        if relay.can_park:

            def ended_parked() -> None:
                try:
                    ended()
                finally:
                    _websockets.leave()

            # Our subscriber's release never blocks (the hub lets channels linger): the end
            # may then run in the event loop. Another WS4REDIS_SUBSCRIBER's might block.
            relay.start(on_end=ended_parked, end_in_loop=type(subscriber) is RedisSubscriber)
            return True
        try:
            relay.run()
        finally:
            ended()
        return False


class _Counter:
    """The websockets of this process, from the start of their handshake to their end."""

    def __init__(self) -> None:
        self.count = 0

    def enter(self, limit: int | None) -> bool:
        if limit is not None and self.count >= limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


_websockets = _Counter()


def open_websockets() -> int:
    """How many websockets this process serves now, counting handshakes in progress."""
    return _websockets.count


def _log_end(path: str, relay: Relay, user: str | None) -> None:
    """The line logged when a websocket ends; its figures are also in the record's extra."""
    if not end_logger.isEnabledFor(logging.INFO):
        return
    figures = {
        "path": path,
        "duration": round(time.monotonic() - relay.started, 3),
        "messages_in": relay.received,
        "bytes_in": relay.received_bytes,
        "messages_out": relay.outbox.sent,
        "bytes_out": relay.outbox.sent_bytes,
        "close_code": relay.close_code,
        "close_reason": relay.close_reason,
        "user": user,
    }
    end_logger.info(
        "WEBSOCKET %s closed (%s) reason=%r after %.3fs in=%d/%dB out=%d/%dB user=%s",
        path,
        relay.close_code,
        relay.close_reason,
        figures["duration"],
        relay.received,
        relay.received_bytes,
        relay.outbox.sent,
        relay.outbox.sent_bytes,
        _user_for_log(user),
        extra={"websocket": figures},
    )


def _user_for_log(user: str | None) -> str:
    # One line per websocket: a name with spaces or control characters is quoted.
    if user is None:
        return "-"
    return user if user.isprintable() and " " not in user and user else repr(user)


def _endpoints(settings: settings_module.Settings) -> dict[str, WSGIApp]:
    """The opt-in endpoints outside WEBSOCKET_URL: health check and metrics."""
    endpoints: dict[str, WSGIApp] = {}
    if settings.health_url:
        from .health import HealthCheck

        endpoints[settings.health_url] = HealthCheck(settings)
    if settings.metrics:
        from . import metrics

        metrics.enable()  # False when it cannot be: logged, and the endpoint answers 503
        if settings.metrics_url:
            endpoints[settings.metrics_url] = metrics.metrics_app
    return endpoints


def _start_metrics() -> None:
    from . import metrics

    metrics.start()


def _facility(raw: str) -> str:
    # PEP 3333 hands the path over as latin-1 decoded bytes; the facility is UTF-8 text.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError as exc:
        raise HandshakeError("the facility in the URL is not valid UTF-8") from exc


def _facility_matcher(patterns: Iterable[str] | None) -> Callable[[str], bool] | None:
    # WS4REDIS_FACILITIES: names, or shell-style patterns ("chat-*"), matched case-sensitively.
    if patterns is None:
        return None
    names = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = [re.compile(fnmatch.translate(p)) for p in patterns if p not in names]
    return lambda facility: facility in names or any(g.match(facility) for g in globs)


def _frame_labels(subscriber: Any, plan: Any) -> dict[bytes, bytes]:
    if isinstance(subscriber, RedisSubscriber):
        return subscriber.frame_labels()
    return {ch.encode(): label.encode() for ch, label in plan.labels.items()}


def _too_many() -> ServiceUnavailable:
    logger.warning("refusing a websocket: WS4REDIS_MAX_CONNECTIONS reached on this worker")
    return ServiceUnavailable("too many websockets on this worker, try again later")


def _host_policy(
    settings: settings_module.Settings, framework: integration.Integration | None
) -> HostPolicy:
    if framework is not None and framework.host_policy is not None:
        return framework.host_policy(settings.allowed_hosts)
    if settings.allowed_hosts is None:
        return HostPolicy(LOOPBACK_HOSTS)
    return HostPolicy(tuple(settings.allowed_hosts))


def _origin_policy(
    settings: settings_module.Settings, hosts: HostPolicy, framework_hosts: bool
) -> OriginPolicy | None:
    if not settings.check_origin:
        return None
    # The plain-WSGI default (loopback names) admits Host names, not other origins: a page on
    # localhost may use its own host's websockets only, as before there were allowed hosts.
    chosen = framework_hosts or settings.allowed_hosts is not None
    # On a development server the pages of other local servers (a front-end's dev server on
    # another port) may use its websockets.
    return OriginPolicy.build(
        settings.allowed_origins,
        hosts.allowed_hosts if chosen else (),
        settings.allow_missing_origin,
        any_port_hosts=LOOPBACK_HOSTS if hosts.development else (),
    )
