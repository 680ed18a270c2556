"""Django identity for websockets: session from the cookie, user and groups from the session.

The app ``ws4redis_gevent`` stores the user's name and group names in the session at login
(``apps.py``), so opening a websocket reads the session only and never queries the user tables.
"""

from __future__ import annotations

import weakref
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.db.backends.signals import connection_created
from greenlet import getcurrent

from .channels import SESSION_GROUPS_KEY, SESSION_USERNAME_KEY
from .identity import parse_cookies


class CallableBool:
    """A bool that can also be called, so ``user.is_authenticated()`` from ws4redis-era code
    (Django < 2.0) keeps working beside ``user.is_authenticated``."""

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = value

    def __bool__(self) -> bool:
        return self._value

    def __call__(self) -> bool:
        return self._value

    def __eq__(self, other: object) -> bool:
        return self._value == bool(other)

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return repr(self._value)


class SessionUser:
    """The user of a websocket, read from the session: a name and group names, no database."""

    def __init__(self, username: str | None, groups: list[str], user_id: Any = None) -> None:
        self.username = username or ""
        self.group_names = list(groups)
        self.pk = self.id = user_id

    @property
    def is_authenticated(self) -> CallableBool:
        return CallableBool(bool(self.username))

    @property
    def is_anonymous(self) -> CallableBool:
        return CallableBool(not self.username)

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username or "AnonymousUser"

    def __repr__(self) -> str:
        return f"<SessionUser {self}>"


def make_request(environ: dict[str, Any], facility: str) -> WSGIRequest:
    """A Django request for the websocket's handshake, with the facility attached."""
    request = WSGIRequest(environ)
    request.facility = facility  # type: ignore[attr-defined]
    return request


def process_request(request: WSGIRequest) -> None:
    """Default WS4REDIS_PROCESS_REQUEST under Django: attach ``session`` and ``user``."""
    engine = _session_engine(settings.SESSION_ENGINE)
    # Read with our linear parser, not request.COOKIES: Django's parse_cookie unquotes with
    # http.cookies, quadratic before Python 3.11.10 / 3.12.6 (CVE-2024-7592).
    session_key = parse_cookies(request.META.get("HTTP_COOKIE", "")).get(
        settings.SESSION_COOKIE_NAME
    )
    session = engine.SessionStore(session_key)
    if session_key is not None:
        session.keys()  # load it now: an unknown or forged key must not count as a session
        if session.session_key != session_key or session.modified:
            session = engine.SessionStore(None)
    request.session = session
    request.user = session_user(request)  # type: ignore[assignment]


def process_request_verifying_user(request: WSGIRequest) -> None:
    """A WS4REDIS_PROCESS_REQUEST that also asks Django's authentication whether the session's
    user still counts, at the cost of one query of the user table per handshake.

    As ``django.contrib.auth.get_user`` does for an HTTP request, the user is loaded through
    the session's backend, which refuses inactive users (``ModelBackend``), and the session's
    auth hash is checked (a password change ends the session). A user refused is anonymous on
    this websocket: the user and group flags are dropped (or refused by
    WS4REDIS_ALLOWED_CHANNELS). Group names are read from the database too (one more query),
    so a member removed from a group loses its channels at the next handshake.
    """
    process_request(request)
    if not request.user.is_authenticated:
        return
    user = _current_user(request.session)
    if user is None:
        request.user = SessionUser(None, [])  # type: ignore[assignment]
        return
    groups = [str(name) for name in user.groups.values_list("name", flat=True)]
    request.user = SessionUser(user.get_username(), groups, user.pk)  # type: ignore[assignment]


def _current_user(session: Any) -> Any:
    # django.contrib.auth.get_user's checks, without its side effects: a handshake cannot hand
    # the browser a new session cookie, so the session is neither flushed nor cycled here.
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
        load_backend,
    )
    from django.core.exceptions import ValidationError
    from django.utils.crypto import constant_time_compare

    # The user, when it still counts; None otherwise.
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)  # None for inactive users
    if user is None or not hasattr(user, "get_session_auth_hash"):
        return user
    session_hash = session.get(HASH_SESSION_KEY)
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if session_hash and any(constant_time_compare(session_hash, h) for h in hashes):
        return user
    return None


_engines: dict[str, Any] = {}


def _session_engine(name: str) -> Any:
    # Imported once per engine (as SessionMiddleware does when it is built), not per handshake.
    engine = _engines.get(name)
    if engine is None:
        engine = _engines.setdefault(name, import_module(name))
    return engine


def close_database_connections() -> None:
    """Close the database connections this greenlet holds, before its websocket is relayed.

    Django closes them when a request finishes; a websocket's request lasts as long as the
    websocket, so without this each open websocket would hold a database connection. A
    greenlet that never opened one (the usual handshake: a signed-cookie or cached session
    needs no database) skips Django's per-alias lookups altogether.
    """
    current = getcurrent()
    if current in _connected:
        _connected.discard(current)
        connections.close_all()


# The greenlets (in threads: each thread's main greenlet) that opened a database connection:
# Django announces every connection it opens with ``connection_created``.
_connected: weakref.WeakSet[Any] = weakref.WeakSet()


def _note_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    _connected.add(getcurrent())


connection_created.connect(_note_connection, weak=False, dispatch_uid=__name__)


def session_user(request: WSGIRequest) -> SessionUser:
    """The SessionUser of a request's session (loading the session, which validates its key)."""
    session = request.session
    user_id = session.get("_auth_user_id")
    if user_id is None:
        return SessionUser(None, [])
    username = session.get(SESSION_USERNAME_KEY)
    if username is None:
        # A session from before the app was installed: look the user up once, and remember.
        from django.contrib.auth import get_user

        user = get_user(request)
        if not user.is_authenticated:
            return SessionUser(None, [])
        store_identity(session, user)
        if not _is_signed_cookie(session):
            # Saving a cookie-based session changes its key, which the browser would not know.
            session.save()
        username = session[SESSION_USERNAME_KEY]
    return SessionUser(username, session.get(SESSION_GROUPS_KEY) or [], user_id)


def _is_signed_cookie(session: Any) -> bool:
    return type(session).__module__ == "django.contrib.sessions.backends.signed_cookies"


def store_identity(session: Any, user: Any) -> None:
    """Keep the user's name and group names in the session (done at login)."""
    session[SESSION_USERNAME_KEY] = user.get_username()
    groups = getattr(user, "groups", None)
    session[SESSION_GROUPS_KEY] = sorted(g.name for g in groups.all()) if groups is not None else []
