"""Callbacks the integration tests hand to server processes by dotted path (``ws_callbacks.X``).

``token_auth`` is a WS4REDIS_PROCESS_REQUEST callback for a plain WSGI app: ``?token=`` names a
user of ``ACCOUNTS``; the others are WS4REDIS_ALLOWED_CHANNELS callbacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ws4redis_gevent.exceptions import PermissionDenied
from ws4redis_gevent.subscriber import RedisSubscriber

SESSION_GROUPS_KEY = "ws4redis:memberof"  # the session key ws4redis keeps group names under


@dataclass(frozen=True)
class Account:
    username: str
    groups: tuple[str, ...] = ()
    session_key: str = field(default="")


ACCOUNTS = {
    "t-john": Account("john", ("chatters", "admins"), "sess-john"),
    "t-mary": Account("mary", ("chatters",), "sess-mary"),
    # Names with ':' whose channels collided before keys.py quoted them.
    "t-alice": Account("alice", ("org:1",), "sess-alice"),
    "t-bob": Account("bob", ("org:1:admins",), "sess-bob"),
    "t-colon": Account("eve:news", (), "sess-colon"),
    "t-tina": Account("tina", ("my team", "50% off"), "sess-tina"),
}


class User:
    """A logged-in user as ws4redis expects one: ``get_username()`` and ``is_authenticated``."""

    is_authenticated = True

    def __init__(self, username: str) -> None:
        self.username = username

    def get_username(self) -> str:
        return self.username


class AnonymousUser:
    is_authenticated = False

    def get_username(self) -> str:
        return ""


class Session(dict):
    """A session: a mapping with a ``session_key`` attribute, like Django's SessionBase."""

    def __init__(self, session_key: str, **values: Any) -> None:
        super().__init__(**values)
        self.session_key = session_key


def token_auth(request: Any) -> None:
    """Identify the client by ``?token=``; without a known token it stays anonymous."""
    account = ACCOUNTS.get(request.GET.get("token", ""))
    if account is None:
        request.user = AnonymousUser()
        request.session = None
        return
    request.user = User(account.username)
    request.session = Session(account.session_key, **{SESSION_GROUPS_KEY: list(account.groups)})


# -- WS4REDIS_ALLOWED_CHANNELS callbacks --------------------------------------------------------


def subscribe_broadcast_only(request: Any, channels: list[str]) -> set[str]:
    return {"subscribe-broadcast"}


def broadcast_only(request: Any, channels: list[str]) -> set[str]:
    """Whitelists the broadcast channels, and says nothing about ``echo``."""
    return set(channels).intersection(["subscribe-broadcast", "publish-broadcast"])


def doc_example(request: Any, channels: list[str]) -> set[str]:
    """The example of the ws4redis documentation, verbatim."""
    return set(channels).intersection(["subscribe-broadcast", "subscribe-group"])


def keep_flags(request: Any, channels: list[str]) -> None:
    """Allows everything by returning nothing, as ws4redis' raising-only callbacks do."""
    return None


def deny(request: Any, channels: list[str]) -> None:
    raise PermissionDenied("no websockets for you")


def deny_anonymous(request: Any, channels: list[str]) -> None:
    if not getattr(request.user, "is_authenticated", False):
        raise PermissionDenied("log in first")


def report_arguments(request: Any, channels: list[str]) -> None:
    """Refuses with a reason that shows what the callback was given (read from the 403 body)."""
    seen = {
        "channels": channels,
        "channels_type": type(channels).__name__,
        "facility": getattr(request, "facility", None),
        "path": request.path,
        "user": request.user.get_username() if request.user is not None else None,
    }
    raise PermissionDenied("ARGS " + json.dumps(seen))


class FailingSubscriber(RedisSubscriber):
    """A WS4REDIS_SUBSCRIBER that fails after it subscribed (an unexpected error)."""

    def get_persisted_messages(self) -> list[Any]:
        raise RuntimeError("failing on purpose, after subscribing")


def no_broadcast_subscription(request: Any, channels: list[str]) -> set[str]:
    """Everything but subscribe-broadcast (presence tests: no presence shown for it)."""
    return set(channels) - {"subscribe-broadcast"}


def wait_for_go(request: Any) -> None:
    """A WS4REDIS_PROCESS_REQUEST that waits (up to 10 s) until the test sets the Redis key
    ``go``: the handshake stays in the application until then."""
    import gevent
    import redis

    from ws4redis_gevent.settings import load

    client = redis.Redis.from_url(load().connection)
    with gevent.Timeout(10):
        while not client.exists("go"):
            gevent.sleep(0.02)
    client.close()
