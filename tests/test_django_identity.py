"""Who a websocket belongs to under Django: user, groups and session, read from the session.

Servers run the test project (tests/django_project) in a subprocess; browsers log in over HTTP
and open websockets with their session cookie, as a page would.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from conftest import wait_for
from django_fixtures import (
    IDENTITY_KEYS,
    clear_server_queries,
    load_session,
    server_queries,
)

from ws4redis_gevent.keys import quote
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

FACILITY = "news"
SESSION_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "file": "django.contrib.sessions.backends.file",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


def publish(redis_url: str, message: str, **audiences: object) -> int:
    """Publish from this process, by name, as Django code elsewhere would."""
    publisher = RedisPublisher(
        facility=FACILITY, settings=Settings(connection=redis_url), **audiences
    )
    return publisher.publish_message(message)


def engine_settings(engine: str, tmp_path: Path) -> dict[str, str]:
    settings = {"SESSION_ENGINE": SESSION_ENGINES[engine]}
    if engine == "file":
        settings["SESSION_FILE_PATH"] = str(tmp_path)
    return settings


def subscribed(server) -> dict[str, int]:
    return server.stats()["channels"]


# -- users --------------------------------------------------------------------------------


def test_user_receives_messages_for_self_and_by_name(django_server, browser, redis_url):
    """subscribe-user gets what a view publishes to users=[SELF] and what others publish
    to users=['john']."""
    john = browser(django_server, "john")
    with john.connect(f"/ws/{FACILITY}?subscribe-user") as ws:
        assert john.publish(FACILITY, "from the view", to="user") == [f"user:john:{FACILITY}"]
        assert ws.recv(timeout=5) == "from the view"
        assert publish(redis_url, "by name", users=["john"]) == 1
        assert ws.recv(timeout=5) == "by name"


def test_user_does_not_receive_other_users_messages(django_server, browser, redis_url):
    """mary's subscribe-user websocket never gets john's messages."""
    john = browser(django_server, "john")
    mary = browser(django_server, "mary")
    with john.connect(f"/ws/{FACILITY}?subscribe-user") as ws_john, \
            mary.connect(f"/ws/{FACILITY}?subscribe-user") as ws_mary:
        john.publish(FACILITY, "john's, from the view", to="user")
        publish(redis_url, "john's, by name", users=["john"])
        publish(redis_url, "mary's", users=["mary"])
        # One Redis connection delivers in publish order: had mary got john's, it came first.
        assert ws_mary.recv(timeout=5) == "mary's"
        assert ws_john.recv(timeout=5) == "john's, from the view"
        assert ws_john.recv(timeout=5) == "john's, by name"
        assert subscribed(django_server) == {f"user:john:{FACILITY}": 1, f"user:mary:{FACILITY}": 1}


# -- groups -------------------------------------------------------------------------------


def test_login_keeps_username_and_groups_in_the_session(django_server, browser):
    """The app's user_logged_in handler stores the name and group names in the session."""
    session = load_session(browser(django_server, "john").session_key)
    assert session["ws4redis:username"] == "john"
    assert sorted(session["ws4redis:memberof"]) == ["admins", "chatters"]


def test_group_subscriber_receives_for_each_of_the_users_groups(
    django_server, browser, redis_url
):
    """subscribe-group covers every group of the user, and only those."""
    john = browser(django_server, "john")
    mary = browser(django_server, "mary")
    with john.connect(f"/ws/{FACILITY}?subscribe-group") as ws_john, \
            mary.connect(f"/ws/{FACILITY}?subscribe-group") as ws_mary:
        assert subscribed(django_server) == {
            f"group:admins:{FACILITY}": 1, f"group:chatters:{FACILITY}": 2,
        }
        publish(redis_url, "to admins", groups=["admins"])
        publish(redis_url, "to chatters", groups=["chatters"])
        assert ws_john.recv(timeout=5) == "to admins"
        assert ws_john.recv(timeout=5) == "to chatters"
        assert ws_mary.recv(timeout=5) == "to chatters"  # not in admins: that came first


def test_view_publishes_to_own_groups(django_server, browser):
    """groups=[SELF] in a view means every group of the logged-in user."""
    john = browser(django_server, "john")
    mary = browser(django_server, "mary")
    with mary.connect(f"/ws/{FACILITY}?subscribe-group") as ws_mary:
        channels = john.publish(FACILITY, "john to his groups", to="group")
        assert sorted(channels) == [f"group:admins:{FACILITY}", f"group:chatters:{FACILITY}"]
        assert ws_mary.recv(timeout=5) == "john to his groups"  # via chatters


# -- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", sorted(SESSION_ENGINES))
def test_session_subscriber_receives_for_its_session(
    start_django_server, browser, engine, tmp_path
):
    """subscribe-session gets what a view publishes to sessions=[SELF] for that session only,
    whichever session engine the site uses."""
    server = start_django_server(settings=engine_settings(engine, tmp_path))
    john = browser(server, "john")
    # Another user: under signed_cookies the key is the session's content, so a second login
    # of john within the same second would get the very same key.
    other = browser(server, "mary")
    with john.connect(f"/ws/{FACILITY}?subscribe-session") as ws_john, \
            other.connect(f"/ws/{FACILITY}?subscribe-session") as ws_other:
        assert john.publish(FACILITY, "john's session", to="session") == [
            # A signed-cookie session key holds ':', which channel names quote (keys.quote).
            f"session:{quote(john.session_key)}:{FACILITY}"
        ]
        other.publish(FACILITY, "other session", to="session")
        assert ws_other.recv(timeout=5) == "other session"
        assert ws_john.recv(timeout=5) == "john's session"


def test_view_publishes_to_groups_session_and_broadcast_at_once(django_server, browser):
    """One publisher with groups=[SELF], sessions=[SELF] and broadcast reaches all three."""
    john = browser(django_server, "john")
    anonymous = browser(django_server)
    with john.connect(f"/ws/{FACILITY}?subscribe-session") as ws_session, \
            john.connect(f"/ws/{FACILITY}?subscribe-group") as ws_group, \
            anonymous.connect(f"/ws/{FACILITY}?subscribe-broadcast") as ws_broadcast:
        channels = john.publish(FACILITY, "everyone", to="group,session,broadcast")
        assert sorted(channels) == sorted([
            f"broadcast:{FACILITY}", f"group:admins:{FACILITY}", f"group:chatters:{FACILITY}",
            f"session:{john.session_key}:{FACILITY}",
        ])
        assert ws_session.recv(timeout=5) == "everyone"
        assert ws_group.recv(timeout=5) == "everyone"
        assert ws_group.recv(timeout=5) == "everyone"  # once per group: admins and chatters
        assert ws_broadcast.recv(timeout=5) == "everyone"


# -- anonymous and forged -----------------------------------------------------------------

ALL_SUBSCRIPTIONS = "subscribe-user&subscribe-group&subscribe-session&subscribe-broadcast"


def test_anonymous_client_is_accepted_and_gets_broadcast_only(
    django_server, browser, redis_url
):
    """Without a session, the audiences SELF cannot name are dropped; the upgrade succeeds."""
    with browser(django_server).connect(f"/ws/{FACILITY}?{ALL_SUBSCRIPTIONS}") as ws:
        assert ws.response.status_code == 101
        assert subscribed(django_server) == {f"broadcast:{FACILITY}": 1}
        publish(redis_url, "to john", users=["john"])
        publish(redis_url, "to chatters", groups=["chatters"])
        publish(redis_url, "to everyone", broadcast=True)
        assert ws.recv(timeout=5) == "to everyone"


FORGED_COOKIES = {
    "db": "0123456789abcdefghijklmnopqrstuv",
    "file": "0123456789abcdefghijklmnopqrstuv",
    # The shape of a signed cookie (payload:timestamp:signature), with a made-up signature.
    "signed_cookies": "eyJfYXV0aF91c2VyX2lkIjoiMSJ9:1u8Ixx:bm90LWEtcmVhbC1zaWduYXR1cmUtYXQtYWxs",
}


@pytest.mark.parametrize("engine", sorted(SESSION_ENGINES))
def test_forged_session_cookie_gives_no_session_audience(
    start_django_server, browser, engine, tmp_path
):
    """A session cookie that names no valid session resolves to no user and no session."""
    server = start_django_server(settings=engine_settings(engine, tmp_path))
    forged = browser(server)
    headers = {"Cookie": f"sessionid={FORGED_COOKIES[engine]}"}
    with forged.connect(f"/ws/{FACILITY}?{ALL_SUBSCRIPTIONS}", additional_headers=headers) as ws:
        assert ws.response.status_code == 101
        assert subscribed(server) == {f"broadcast:{FACILITY}": 1}


# -- no database on the websocket path ----------------------------------------------------


def auth_queries(server) -> list[str]:
    return [sql for sql in server_queries(server) if "auth_" in sql]


def test_websocket_identifies_without_querying_auth_tables(django_server, browser):
    """Opening a websocket reads the session only: user and groups come from it, not from
    the auth tables (the server records every SQL statement it runs through Django)."""
    john = browser(django_server, "john")
    clear_server_queries(django_server)
    with john.connect(f"/ws/{FACILITY}?subscribe-user&subscribe-group"):
        assert subscribed(django_server) == {
            f"user:john:{FACILITY}": 1,
            f"group:admins:{FACILITY}": 1,
            f"group:chatters:{FACILITY}": 1,
        }
    statements = server_queries(django_server)
    assert any("django_session" in sql for sql in statements), statements  # recorder works
    assert auth_queries(django_server) == []


def test_session_from_before_the_app_is_completed_by_one_lookup(
    django_server, browser, redis_url
):
    """A session without the stored identity (made before the app was installed) still works:
    the user and groups are looked up once and kept in the session for the next websocket."""
    john = browser(django_server, "john")
    session = load_session(john.session_key)
    for key in IDENTITY_KEYS:
        del session[key]
    session.save()
    assert not any(key in load_session(john.session_key) for key in IDENTITY_KEYS)

    clear_server_queries(django_server)
    with john.connect(f"/ws/{FACILITY}?subscribe-user&subscribe-group") as ws:
        publish(redis_url, "to john", users=["john"])
        publish(redis_url, "to admins", groups=["admins"])
        assert ws.recv(timeout=5) == "to john"
        assert ws.recv(timeout=5) == "to admins"
    assert auth_queries(django_server), "the identity was not looked up"
    session = load_session(john.session_key)
    assert session["ws4redis:username"] == "john"
    assert sorted(session["ws4redis:memberof"]) == ["admins", "chatters"]

    clear_server_queries(django_server)
    with john.connect(f"/ws/{FACILITY}?subscribe-user&subscribe-group"):
        assert len(subscribed(django_server)) == 3
    assert auth_queries(django_server) == []


def database_handles(server, database: Path) -> int:
    """How many file descriptors of the server process are open on the sqlite file."""
    fd_dir = Path(f"/proc/{server.proc.pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == str(database)
    return count


def test_open_websockets_hold_no_database_connection(django_server, browser, django_site):
    """The session is read while identifying; the connection is not kept for the websocket's
    life (with a database server, one held per websocket would exhaust its connections)."""
    john = browser(django_server, "john")
    wait_for(lambda: database_handles(django_server, django_site.database) == 0)
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(john.connect(f"/ws/{FACILITY}?subscribe-user"))
        assert subscribed(django_server) == {f"user:john:{FACILITY}": 3}
        assert database_handles(django_server, django_site.database) == 0


def in_new_thread(body):
    """Run ``body`` in a thread of its own (Django's connections are per thread here: the test
    process is not monkey-patched) and return what it returns."""
    import threading

    results: list = []
    thread = threading.Thread(target=lambda: results.append(body()))
    thread.start()
    thread.join(10)
    assert results, "the thread failed"
    return results[0]


def test_database_connections_closed_only_where_one_was_opened(django_site, monkeypatch):
    """close_database_connections closes what the handshake's greenlet opened (the session
    read from the database), and skips Django's per-alias lookups where nothing was opened
    (signed-cookie or cached sessions)."""
    from django.db import connections

    from ws4redis_gevent import django_request

    closes: list[int] = []
    close_all = connections.close_all
    monkeypatch.setattr(connections, "close_all", lambda: (closes.append(1), close_all()))

    def nothing_opened():
        django_request.close_database_connections()
        return len(closes)

    def one_opened():
        connection = connections["default"]
        connection.ensure_connection()
        assert connection.connection is not None
        django_request.close_database_connections()
        closed = connection.connection is None
        django_request.close_database_connections()  # nothing opened since: skipped
        return closed, len(closes)

    assert in_new_thread(nothing_opened) == 0
    assert in_new_thread(one_opened) == (True, 1)


# -- deactivated users (docs/reliability.rst, "Deactivated users") -------------------------

VERIFYING = "ws4redis_gevent.django_request.process_request_verifying_user"


@contextlib.contextmanager
def deactivated(username: str):
    """``is_active=False`` for the block, as an admin would set it."""
    from django.contrib.auth.models import User

    User.objects.filter(username=username).update(is_active=False)
    try:
        yield
    finally:
        User.objects.filter(username=username).update(is_active=True)


@contextlib.contextmanager
def password_changed(username: str):
    from django.contrib.auth.models import User
    from django_fixtures import password

    user = User.objects.get(username=username)
    user.set_password("another-" + password(username))
    user.save()
    try:
        yield
    finally:
        user.set_password(password(username))
        user.save()


def test_deactivated_user_keeps_the_session_identity_by_default(django_server, browser):
    """Documented: the default handshake reads the session only (no query), so a user set
    to is_active=False keeps user and group channels until the session ends."""
    john = browser(django_server, "john")
    expected = {
        f"user:john:{FACILITY}": 1,
        f"group:chatters:{FACILITY}": 1,
        f"group:admins:{FACILITY}": 1,
    }
    with deactivated("john"), john.connect(f"/ws/{FACILITY}?subscribe-user&subscribe-group"):
        wait_for(lambda: subscribed(django_server) == expected)


def test_verifying_process_request_makes_deactivated_users_anonymous(start_django_server, browser):
    """With process_request_verifying_user, a deactivated user, or a session whose password
    changed, opens websockets as an anonymous client: user and group flags are dropped."""
    server = start_django_server(settings={"WS4REDIS_PROCESS_REQUEST": VERIFYING})
    john = browser(server, "john")
    path = f"/ws/{FACILITY}?subscribe-user&subscribe-group&subscribe-broadcast"
    identified = {
        f"user:john:{FACILITY}": 1,
        f"group:chatters:{FACILITY}": 1,
        f"group:admins:{FACILITY}": 1,
        f"broadcast:{FACILITY}": 1,
    }
    anonymous = {f"broadcast:{FACILITY}": 1}
    # Active, deactivated, active again: the session itself is left intact.
    for change, expected in (
        (contextlib.nullcontext, identified),
        (deactivated, anonymous),
        (contextlib.nullcontext, identified),
        (password_changed, anonymous),
    ):
        with change("john"), john.connect(path):
            wait_for(lambda expected=expected: subscribed(server) == expected)
        wait_for(lambda: subscribed(server) == {})
