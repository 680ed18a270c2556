"""The exceptions ws4redis_gevent raises, rooted in one base class.

Before the upgrade, failures are HTTP responses (``HandshakeError`` and its subclasses carry the
status); after the upgrade, they are websocket close codes (``ProtocolError``). The two never mix.
"""

from __future__ import annotations

from http import HTTPStatus


class WebsocketError(Exception):
    """Base class of every exception raised by ws4redis_gevent."""


class ImproperlyConfigured(WebsocketError):
    """A setting has a value that cannot work."""


class HandshakeError(WebsocketError):
    """The request cannot be upgraded; answered with ``status`` before any 101."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(
        self,
        reason: str,
        status: HTTPStatus | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        self.headers = headers or []

    def __str__(self) -> str:
        return f"{self.status.value} {self.status.phrase}: {self.reason}"


class UpgradeRequired(HandshakeError):
    """A plain HTTP request, or an unsupported websocket version (RFC 6455 section 4.4)."""

    status = HTTPStatus.UPGRADE_REQUIRED


class PermissionDenied(HandshakeError):
    """The client may not open this websocket (raise it from WS4REDIS_ALLOWED_CHANNELS)."""

    status = HTTPStatus.FORBIDDEN

    def __init__(self, reason: str = "forbidden", **kwargs: object) -> None:
        super().__init__(reason, **kwargs)  # type: ignore[arg-type]


class ServiceUnavailable(HandshakeError):
    """The server cannot take this websocket now (Redis down, too many connections)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ProtocolError(WebsocketError):
    """The client broke RFC 6455 or a limit after the upgrade; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ConnectionClosed(WebsocketError):
    """The websocket is closed; nothing more can be sent or received."""
