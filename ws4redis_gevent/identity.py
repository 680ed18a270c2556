"""Who is on the other end of a websocket: the request object passed to callbacks, and its Identity.

Under Django the request is a real ``WSGIRequest`` with ``session`` and ``user``; for a plain WSGI
app it is a ``WebsocketRequest``, which a WS4REDIS_PROCESS_REQUEST callback may give a ``user``
(anything with ``get_username()`` and ``is_authenticated``) and a ``session`` (a mapping with a
``session_key`` attribute).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from .channels import SESSION_GROUPS_KEY, Identity


class WebsocketRequest:
    """The request handed to callbacks when Django is not in use."""

    def __init__(self, environ: dict[str, Any], facility: str) -> None:
        self.environ = environ
        self.facility = facility
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path_info = environ.get("PATH_INFO", "")
        self.path = environ.get("SCRIPT_NAME", "") + self.path_info
        self.META = environ
        self.GET = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        self.user: Any = None
        self.session: Any = None

    @functools.cached_property
    def COOKIES(self) -> dict[str, str]:  # noqa: N802 (Django's name)
        """The request's cookies, parsed on first use (most handshakes never read them)."""
        return parse_cookies(self.environ.get("HTTP_COOKIE", ""))

    def __repr__(self) -> str:
        return f"<WebsocketRequest {self.path!r}>"


_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))", re.DOTALL)


def parse_cookies(header: str) -> dict[str, str]:
    """``name=value`` pairs separated by ``;``, as browsers send them, in one linear pass.

    Not ``http.cookies.SimpleCookie``: before Python 3.11.10 / 3.12.6 it takes quadratic time
    on a quoted value full of backslash escapes (CVE-2024-7592), and one bad pair made it drop
    every cookie. A quoted value is unquoted as SimpleCookie does (``\\"``, ``\\073``)."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, separator, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not separator or not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _ESCAPE.sub(_unescape, value[1:-1])
        cookies[name] = value
    return cookies


def _unescape(match: re.Match[str]) -> str:
    octal, char = match.groups()
    return chr(int(octal, 8)) if octal else char


def is_authenticated(user: Any) -> bool:
    """``user.is_authenticated`` whether it is a property, a method, or missing."""
    value = getattr(user, "is_authenticated", False)
    return bool(value() if callable(value) else value)


def identity_from_request(request: Any) -> Identity:
    """The Identity of a request: its authenticated user, their groups and its session key."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    username: str | None = None
    groups: tuple[str, ...] = ()
    if user is not None and is_authenticated(user):
        username = str(user.get_username()) or None
        # A user object may carry its group names (``group_names``, as the verifying
        # process_request reads them from the database); else the session's, kept at login.
        names = getattr(user, "group_names", None)
        if names is not None:
            groups = tuple(str(g) for g in names)
        elif session is not None and (isinstance(session, Mapping) or hasattr(session, "get")):
            groups = tuple(str(g) for g in (session.get(SESSION_GROUPS_KEY) or ()))
    session_key = getattr(session, "session_key", None) if session is not None else None
    return Identity(user=username, groups=groups, session_key=session_key or None)
