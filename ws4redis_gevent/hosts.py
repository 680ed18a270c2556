"""The Host check of websocket handshakes, and the host and scheme a request was made for.

Pure functions on a WSGI environ, no I/O, no Django import: the Django adapter
(``django_hosts``) maps ``ALLOWED_HOSTS``, ``USE_X_FORWARDED_HOST`` and
``SECURE_PROXY_SSL_HEADER`` onto the plain options of ``HostPolicy``.

A server that answers any ``Host`` can be reached through DNS rebinding: a page on
``rebind.attacker.example``, whose name then resolves to the server's address, is same-origin
with it as far as the browser is concerned. Refusing Host names the site does not serve, before
the upgrade, closes that door (Django's ``ALLOWED_HOSTS`` does the same for HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import ImproperlyConfigured

# The Host names every machine gives itself: the default of WS4REDIS_ALLOWED_HOSTS for a plain
# WSGI app, and Django's allowed hosts with DEBUG and an empty ALLOWED_HOSTS.
LOOPBACK_HOSTS = (".localhost", "127.0.0.1", "[::1]")

# A host as Django's ``split_domain_port`` accepts it: a name or an IPv4 address, or an IPv6
# address in brackets, then an optional port.
_HOST = re.compile(r"^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]{1,5}))?$")


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


def host_matches(domain: str, patterns: Iterable[str]) -> bool:
    """Whether ``domain`` matches one of ``patterns`` as Django's ``validate_host`` decides
    (``example.com`` exactly, ``.example.com`` the domain and its subdomains), except that
    ``*`` matches nothing here: see ``is_allowed_host`` for the Host check."""
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


def is_allowed_host(domain: str, patterns: Iterable[str]) -> bool:
    """Django's ``validate_host``: ``*`` allows every host, other patterns as ``host_matches``."""
    patterns = list(patterns)
    return "*" in patterns or host_matches(domain, patterns)


def check_host_list(name: str, value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of host patterns.

    Raises:
        ImproperlyConfigured: ``value`` is a string, or holds something other than strings.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ImproperlyConfigured(f"{name} must be a list of host names, not {value!r}")
    hosts = tuple(value)
    for host in hosts:
        if not isinstance(host, str):
            raise ImproperlyConfigured(f"{name}: {host!r} is not a host name")
    return hosts


@dataclass(frozen=True)
class HostPolicy:
    """Which Host names the websockets are served for, and how a request's host and scheme are
    read (directly, or from headers set by a trusted proxy).

    Attributes:
        allowed_hosts: patterns as Django's ``ALLOWED_HOSTS`` (``example.com``,
            ``.example.com``, ``*``).
        use_forwarded_host: read the host from ``X-Forwarded-Host`` when present.
        secure_proxy_ssl_header: ``(environ key, value)``: a request is https when this
            header (its first value) equals ``value``; otherwise ``wsgi.url_scheme`` says.
        setting: the setting named in refusals, so the reader knows what to change.
        development: a development server (Django's ``DEBUG`` with no ``ALLOWED_HOSTS``):
            pages of loopback hosts on any port may use its websockets (the origin check).
    """

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    use_forwarded_host: bool = False
    secure_proxy_ssl_header: tuple[str, str] | None = None
    setting: str = "WS4REDIS_ALLOWED_HOSTS"
    development: bool = False

    def host(self, environ: Mapping[str, Any]) -> str:
        """The host the request was made for, as Django's ``get_host`` reads it."""
        if self.use_forwarded_host and "HTTP_X_FORWARDED_HOST" in environ:
            return str(environ["HTTP_X_FORWARDED_HOST"])
        return str(environ.get("HTTP_HOST", ""))

    def scheme(self, environ: Mapping[str, Any]) -> str:
        """``https`` or ``http``: the scheme of the page's server as the browser sees it."""
        if self.secure_proxy_ssl_header is not None:
            key, secure_value = self.secure_proxy_ssl_header
            value = environ.get(key)
            if value is not None:
                return "https" if str(value).split(",", 1)[0].strip() == secure_value else "http"
        return "https" if environ.get("wsgi.url_scheme") == "https" else "http"

    def refusal(self, host: str) -> str | None:
        """Why a handshake for this host is refused (answered with 400); None if allowed."""
        split = split_host(host)
        if split is None:
            return f"Host {host[:100]!r} is not a valid host name"
        if is_allowed_host(split[0], self.allowed_hosts):
            return None
        return f"Host {split[0]!r} is not allowed: add it to {self.setting}"
