"""The Origin check of websocket handshakes: pure functions, no I/O, no Django import.

Browsers send the page's origin with every websocket handshake (RFC 6455 section 4.1, item 8)
and, unlike for other requests, no same-origin policy applies to websockets: any website may
open one to this server, with the user's cookies. Refusing foreign origins before the upgrade
stops cross-site websocket hijacking. An origin is allowed when

- its host (and port) is the request's ``Host``: the page comes from this very server;
- its host matches a pattern of Django's ``ALLOWED_HOSTS`` (``example.com``, ``.example.com``
  for a domain and its subdomains; ``*`` does not count: it says any Host header is served,
  not that any website may use the users' sessions);
- it is one of ``WS4REDIS_ALLOWED_ORIGINS`` (full origins, ``https://app.example.com``), or
  that setting contains ``*``.

A handshake without Origin comes from a program, not a browser (browsers always send one), and
cannot carry a victim's cookies by itself: allowed unless ``WS4REDIS_ALLOW_MISSING_ORIGIN`` is
off. The opaque origin ``null`` (sandboxed frames, ``file:`` pages, some redirects) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .exceptions import ImproperlyConfigured

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# A host as Django's ``split_domain_port`` accepts it: a name or an IPv4 address, or an IPv6
# address in brackets, then an optional port.
_HOST = re.compile(r"^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]{1,5}))?$")
# An origin as browsers serialise it (RFC 6454 section 6.2): scheme "://" host [ ":" port ].
_ORIGIN = re.compile(r"^([a-z][a-z0-9+.-]*)://([^/?#@\s]+)$")


@dataclass(frozen=True)
class Origin:
    """A tuple origin: scheme, host and port (the scheme's default port when none is given)."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port is None or self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}"


def split_host(value: str) -> tuple[str, int | None] | None:
    """Domain and port of a ``Host`` header value (lower-cased, trailing dot removed).

    Returns None when the value is not a valid host.
    """
    match = _HOST.match(value.strip().lower())
    if match is None:
        return None
    domain, port = match.groups()
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        return None
    return domain, (int(port) if port is not None else None)


def parse_origin(value: str) -> Origin | None:
    """The Origin of an ``Origin`` header value, or None if it is not a serialised origin.

    ``null`` and anything with a path, a query, user info or several origins give None.
    """
    match = _ORIGIN.match(value.strip().lower())
    if match is None:
        return None
    scheme, netloc = match.groups()
    host = split_host(netloc)
    if host is None:
        return None
    domain, port = host
    return Origin(scheme, domain, port if port is not None else DEFAULT_PORTS.get(scheme))


def host_matches(domain: str, patterns: Iterable[str]) -> bool:
    """Whether ``domain`` matches one of ``patterns`` as Django's ``validate_host`` decides,
    except that ``*`` matches nothing here (see the module docstring)."""
    domain = domain.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*" or not pattern:
            continue
        if pattern.startswith("."):
            if domain == pattern[1:] or domain.endswith(pattern):
                return True
        elif domain == pattern:
            return True
    return False


@dataclass(frozen=True)
class OriginPolicy:
    """Which origins may open websockets; ``refusal`` applies it to one handshake.

    Build it with ``OriginPolicy.build``, which validates the settings.
    """

    origins: frozenset[Origin] = frozenset()
    any_origin: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allow_missing: bool = True

    @classmethod
    def build(
        cls,
        allowed_origins: Iterable[str] | None = None,
        allowed_hosts: Iterable[str] = (),
        allow_missing: bool = True,
    ) -> OriginPolicy:
        """A policy from WS4REDIS_ALLOWED_ORIGINS, ALLOWED_HOSTS and
        WS4REDIS_ALLOW_MISSING_ORIGIN.

        Raises:
            ImproperlyConfigured: an allowed origin is not ``scheme://host[:port]`` or ``*``.
        """
        if isinstance(allowed_origins, str):
            raise ImproperlyConfigured("WS4REDIS_ALLOWED_ORIGINS must be a list, not a string")
        entries = list(allowed_origins or ())
        origins = set()
        for entry in entries:
            if entry == "*":
                continue
            origin = parse_origin(entry.rstrip("/")) if isinstance(entry, str) else None
            if origin is None:
                raise ImproperlyConfigured(
                    f"WS4REDIS_ALLOWED_ORIGINS: {entry!r} is not an origin like "
                    "'https://app.example.com' (scheme, host, optional port, no path) or '*'"
                )
            origins.add(origin)
        return cls(
            origins=frozenset(origins),
            any_origin="*" in entries,
            allowed_hosts=tuple(allowed_hosts),
            allow_missing=allow_missing,
        )

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """Why a handshake with this ``Origin`` and ``Host`` is refused; None if it is allowed.

        Args:
            origin: the Origin header, None when the request has none.
            host: the Host header (or the forwarded host the application trusts), or None.
        """
        if origin is None:
            if self.allow_missing:
                return None
            return "the handshake has no Origin header"
        if self.any_origin:
            return None
        parsed = parse_origin(origin)
        if parsed is None:
            return f"origin {origin[:100]!r} is not allowed"
        if parsed in self.origins or _is_same_host(parsed, host):
            return None
        if host_matches(parsed.host, self.allowed_hosts):
            return None
        return f"origin {str(parsed)!r} is not allowed"


def _is_same_host(origin: Origin, host: str | None) -> bool:
    split = split_host(host) if host else None
    if split is None:
        return False
    domain, port = split
    # A Host without a port stands for the default port of the scheme the page used.
    if port is None:
        port = DEFAULT_PORTS.get(origin.scheme)
    return (domain, port) == (origin.host, origin.port)
