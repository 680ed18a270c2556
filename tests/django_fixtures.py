"""Fixtures for the Django tests: a shared sqlite database, users, servers, logged-in browsers.

A plugin (``pytest_plugins`` in conftest.py); test modules import its helpers. Django is
configured in the test process lazily, by the session fixture ``django_site``, never at import:
plain-WSGI test modules that do not use these fixtures run without it.

The database is one sqlite file for the whole session, created with ``migrate`` in this
process; the users are john (groups chatters, admins) and mary (group chatters). Server
processes open the same file (``WS4REDIS_TEST_DB``), so a session created by logging in through
a server can be read here, and a session written here is seen by the server.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "tests.django_project.settings"
USERS = {"john": ("chatters", "admins"), "mary": ("chatters",)}
IDENTITY_KEYS = ("ws4redis:username", "ws4redis:memberof")


def password(username: str) -> str:
    return f"{username}-password"


@dataclass(frozen=True)
class DjangoSite:
    """The configured test project: its database file, shared with the server processes."""

    database: Path

    def server_env(self, settings: dict[str, Any] | None = None) -> dict[str, str]:
        env = {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, "WS4REDIS_TEST_DB": str(self.database)}
        if settings:
            env["WS4REDIS_TEST_SETTINGS"] = json.dumps(settings)
        return env


def _configure_django(database: Path) -> Path:
    if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the root out
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    os.environ.setdefault("WS4REDIS_TEST_DB", str(database))
    import django
    from django.conf import settings

    django.setup()
    assert settings.SETTINGS_MODULE == SETTINGS_MODULE, "Django runs with other settings"
    return Path(settings.DATABASES["default"]["NAME"])


def _create_users() -> None:
    from django.contrib.auth.models import Group, User

    for username, group_names in USERS.items():
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password(username))
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in group_names])


@pytest.fixture(scope="session")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> DjangoSite:
    """Django configured in this process with the test project; database migrated, users made."""
    from django.core.management import call_command

    database = _configure_django(tmp_path_factory.mktemp("django") / "db.sqlite3")
    call_command("migrate", verbosity=0, interactive=False)
    _create_users()
    return DjangoSite(database)


@pytest.fixture
def ws4redis_settings(django_site: DjangoSite) -> Iterator[None]:
    """Settings read from Django only: options given to configure() in this process by other
    tests are put aside for the test, and restored afterwards."""
    from ws4redis_gevent import settings

    saved = dict(settings._configured)
    settings.reset()
    yield
    settings.reset()
    settings.configure(**saved)


@pytest.fixture
def start_django_server(
    django_site: DjangoSite, start_server: Callable[..., Any]
) -> Callable[..., Any]:
    """Start a server process for the test project; ``settings`` are extra Django settings,
    other keywords are middleware options."""

    def start(settings: dict[str, Any] | None = None, **options: Any) -> Any:
        return start_server(django=True, env=django_site.server_env(settings), **options)

    return start


@pytest.fixture
def django_server(start_django_server: Callable[..., Any]) -> Any:
    """A server for the test project with default settings."""
    return start_django_server()


class Browser:
    """An HTTP client with a cookie jar, like a browser: logs in, calls views, opens websockets
    with its cookies."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET ``path``, or POST ``data`` form-encoded; returns (status, body)."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self._opener.open(self.server.http_url + path, data=body, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def login(self, username: str, secret: str | None = None) -> Browser:
        status, body = self.request(
            "/login/", {"username": username, "password": secret or password(username)}
        )
        assert status == 200, body
        assert self.session_key, "login set no session cookie"
        return self

    def publish(self, facility: str, message: str, to: str) -> list[str]:
        """Publish through the view, to SELF in the audiences ``to`` ("user,group,...")."""
        status, body = self.request(f"/publish/{facility}/", {"message": message, "to": to})
        assert status == 200, body
        return json.loads(body)["channels"]

    @property
    def session_key(self) -> str | None:
        return next((c.value for c in self.cookies if c.name == "sessionid"), None)

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)

    def connect(self, path: str, **kwargs: Any) -> Any:
        """A websocket to ``path`` sending this browser's cookies."""
        if self.cookie_header:
            kwargs.setdefault("additional_headers", {"Cookie": self.cookie_header})
        return self.server.connect(path, **kwargs)


@pytest.fixture
def browser(django_site: DjangoSite) -> Callable[..., Browser]:
    """``browser(server, username=None)``: a Browser, logged in when a username is given."""

    def make(server: Any, username: str | None = None) -> Browser:
        client = Browser(server)
        return client.login(username) if username else client

    return make


def load_session(session_key: str) -> Any:
    """The session stored under ``session_key``, read here with the configured engine."""
    from importlib import import_module

    from django.conf import settings

    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def server_queries(server: Any) -> list[str]:
    """The SQL the server process ran since ``clear_server_queries``."""
    with urllib.request.urlopen(server.http_url + "/_queries/", timeout=10) as response:
        return json.loads(response.read())["statements"]


def clear_server_queries(server: Any) -> None:
    request = urllib.request.Request(server.http_url + "/_queries/", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
