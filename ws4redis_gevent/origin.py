"""The Origin check of websocket handshakes: pure functions, no I/O, no Django import.

Browsers send the page's origin with every websocket handshake (RFC 6455 section 4.1, item 8)
and, unlike for other requests, no same-origin policy applies to websockets: any website may
open one to this server, with the user's cookies. Refusing foreign origins before the upgrade
stops cross-site websocket hijacking. Origins are compared as browsers define them (RFC 6454):
scheme, host and port, a missing port being the scheme's default. An origin is allowed when

- it is one of ``WS4REDIS_ALLOWED_ORIGINS`` (full origins, ``https://app.example.com``), or
  that setting contains ``*``;
- its host is the request's ``Host``, or matches an allowed-hosts pattern (``example.com``,
  ``.example.com`` for a domain and its subdomains; ``*`` does not count: it says any Host
  header is served, not that any website may use the users' sessions), and its port is the
  request's port and its scheme the request's scheme: an ``http://`` page, which anyone on
  the network can alter, may not use an https site's websockets. (An ``https://`` page may use
  an http endpoint of its host: that is a TLS-terminating proxy, not a downgrade.);
- on a development server (Django's ``DEBUG`` with an empty ``ALLOWED_HOSTS``), its host is a
  loopback name: pages of local development servers on any port.

The Host itself is checked first (``hosts.HostPolicy``), so a DNS-rebinding page, whose origin
is "same host" by construction, is refused because its Host is not one the site serves.

A handshake without Origin comes from a program, not a browser (browsers always send one), and
cannot carry a victim's cookies by itself: allowed unless ``WS4REDIS_ALLOW_MISSING_ORIGIN`` is
off. The opaque origin ``null`` (sandboxed frames, ``file:`` pages, some redirects) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .exceptions import ImproperlyConfigured
from .hosts import host_matches, split_host

__all__ = ["Origin", "OriginPolicy", "host_matches", "parse_origin", "split_host"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

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


@dataclass(frozen=True)
class OriginPolicy:
    """Which origins may open websockets; ``refusal`` applies it to one handshake.

    Build it with ``OriginPolicy.build``, which validates the settings.
    """

    origins: frozenset[Origin] = frozenset()
    any_origin: bool = False
    allowed_hosts: tuple[str, ...] = ()
    any_port_hosts: tuple[str, ...] = ()
    allow_missing: bool = True

    @classmethod
    def build(
        cls,
        allowed_origins: Iterable[str] | None = None,
        allowed_hosts: Iterable[str] = (),
        allow_missing: bool = True,
        any_port_hosts: Iterable[str] = (),
    ) -> OriginPolicy:
        """A policy from WS4REDIS_ALLOWED_ORIGINS, the allowed hosts and
        WS4REDIS_ALLOW_MISSING_ORIGIN; ``any_port_hosts``: hosts whose pages are allowed on
        any scheme and port (loopback names with the development defaults).

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
            any_port_hosts=tuple(any_port_hosts),
            allow_missing=allow_missing,
        )

    def refusal(self, origin: str | None, host: str | None, scheme: str = "http") -> str | None:
        """Why a handshake with this ``Origin`` and ``Host`` is refused; None if it is allowed.

        Args:
            origin: the Origin header, None when the request has none.
            host: the Host header (or the forwarded host the application trusts), or None.
            scheme: ``https`` when the request reached the site over TLS, else ``http``.
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
        if parsed in self.origins or host_matches(parsed.host, self.any_port_hosts):
            return None
        if not _scheme_fits(parsed.scheme, scheme):
            page = f"an {parsed.scheme} page for an {scheme} site"
            return f"origin {str(parsed)!r} is not allowed: {page}"
        if _is_site_origin(parsed, host, self.allowed_hosts):
            return None
        return f"origin {str(parsed)!r} is not allowed"


def _scheme_fits(origin_scheme: str, request_scheme: str) -> bool:
    # Over TLS, only pages served over TLS; otherwise any (an https page reaching an http
    # request went through a TLS-terminating proxy).
    if request_scheme == "https":
        return origin_scheme in ("https", "wss")
    return True


def _is_site_origin(origin: Origin, host: str | None, allowed_hosts: tuple[str, ...]) -> bool:
    split = split_host(host) if host else None
    if split is None:
        return False
    domain, port = split
    # A Host without a port stands for the default port of the scheme the page used.
    if port is None:
        port = DEFAULT_PORTS.get(origin.scheme)
    if origin.port != port:
        return False
    return origin.host == domain or host_matches(origin.host, allowed_hosts)
