"""``manage.py runserver`` with ws4redis_gevent installed: HTTP, static files and websockets
under gevent, runserver-style logs, autoreload, shutdown; and what happens without it.

Each test writes a minimal Django project into its temporary directory and runs its
``manage.py runserver`` in a subprocess against the test redis-server.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import wait_for
from runserver_process import Runserver
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

STAMP = r"^\[\d{2}/[A-Z][a-z]{2}/\d{4} \d{2}:\d{2}:\d{2}\] "

MANAGE = """\
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

SETTINGS = """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "test"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = {apps!r}
ROOT_URLCONF = "proj.urls"
WSGI_APPLICATION = "proj.wsgi.application"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WS4REDIS_CONNECTION = os.environ["REDIS_URL"]
"""

URLS = """\
from django.urls import path

from proj.views import hello

urlpatterns = [path("", hello)]
"""

VIEWS = """\
from django.http import HttpResponse


def hello(request):
    return HttpResponse("{text}")
"""

WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
application = get_wsgi_application()
"""

WRAPPED_WSGI = (
    WSGI
    + """
from ws4redis_gevent import WebsocketMiddleware

application = WebsocketMiddleware(application)
"""
)

WITH_STATICFILES = ["ws4redis_gevent", "django.contrib.staticfiles"]


def make_project(
    root: Path, apps: list[str] | None = None, wsgi: str = WSGI, text: str = "version 1"
) -> Path:
    """Write a minimal project (one view, one static file) into ``root``."""
    package = root / "proj"
    (package / "static").mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS.format(apps=apps or WITH_STATICFILES))
    (package / "urls.py").write_text(URLS)
    (package / "views.py").write_text(VIEWS.format(text=text))
    (package / "wsgi.py").write_text(wsgi)
    (package / "static" / "hello.txt").write_text("static hello\n")
    return root


@pytest.fixture
def runservers(redis_url: str):
    """Start runservers on a project (stopped at the end of the test)."""
    started: list[Runserver] = []

    def start(project: Path, *args: str) -> Runserver:
        server = Runserver(project, args, env={"REDIS_URL": redis_url}).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def publish(redis_url: str, facility: str, message: str) -> int:
    publisher = RedisPublisher(
        facility=facility, broadcast=True, settings=Settings(connection=redis_url)
    )
    return publisher.publish_message(message)


@pytest.mark.parametrize("staticfiles", [True, False], ids=["staticfiles", "no-staticfiles"])
def test_serves_http_static_files_and_websockets(tmp_path, runservers, redis_url, staticfiles):
    """One process serves the views, static files (when staticfiles is installed, as its
    runserver would) and websockets, and logs requests and websockets runserver-style."""
    apps = WITH_STATICFILES if staticfiles else ["ws4redis_gevent"]
    server = runservers(make_project(tmp_path, apps), "--noreload")
    server.wait_until_serving()

    assert server.get("/") == (200, "version 1")
    status, body = server.get("/static/hello.txt")
    assert (status, body) == ((200, "static hello\n") if staticfiles else (404, body))
    with server.connect("/ws/news?subscribe-broadcast") as ws:
        assert publish(redis_url, "news", "breaking") == 1
        assert ws.recv(timeout=5) == "breaking"

    server.wait_for_output(STAMP + r'"GET / HTTP/1\.1" 200 9$')
    server.wait_for_output(STAMP + r'"GET /static/hello\.txt HTTP/1\.1" ' + str(status))
    server.wait_for_output(STAMP + r"WEBSOCKET /ws/news connected ")
    server.wait_for_output(STAMP + r"WEBSOCKET /ws/news closed \(1000\)")
    # The upgrade itself is not logged as an HTTP request: the two lines above say it all.
    assert not re.search(r'"GET /ws/news', server.output)
    assert "MonkeyPatchWarning" not in server.output


def test_refused_websockets_are_logged(tmp_path, runservers):
    """A websocket refused before the upgrade shows as the middleware's reason and as an
    HTTP line with its status."""
    server = runservers(make_project(tmp_path), "--noreload")
    server.wait_until_serving()
    with pytest.raises(InvalidStatus) as refused:
        server.connect("/ws/")  # no facility
    assert refused.value.response.status_code == 404
    server.wait_for_output(STAMP + r"refused websocket /ws/: 404")
    server.wait_for_output(STAMP + r'"GET /ws/ HTTP/1\.1" 404 ')


def test_wsgi_application_already_wrapped_is_not_wrapped_again(tmp_path, runservers, redis_url):
    """A wsgi.py that wraps its application in WebsocketMiddleware (as for gunicorn) works
    under runserver too: websockets are served by that middleware, once."""
    server = runservers(make_project(tmp_path, wsgi=WRAPPED_WSGI), "--noreload")
    server.wait_until_serving()
    with server.connect("/ws/news?subscribe-broadcast") as ws:
        assert publish(redis_url, "news", "once") == 1
        assert ws.recv(timeout=5) == "once"
    assert server.get("/static/hello.txt") == (200, "static hello\n")
    server.wait_for_output(r"WEBSOCKET /ws/news closed \(1000\)")
    assert len(re.findall("WEBSOCKET /ws/news connected", server.output)) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_closes_websockets_with_going_away(tmp_path, runservers, signum):
    """On SIGTERM or Ctrl-C (SIGINT) the server closes its websockets with 1001, whichever
    greenlet the signal interrupts, and exits with status 0."""
    server = runservers(make_project(tmp_path), "--noreload")
    server.wait_until_serving()
    with server.connect("/ws/news?subscribe-broadcast") as ws:
        ws.ping().wait(5)
        assert server.proc is not None
        server.proc.send_signal(signum)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    # It exits by itself: a second signal sent while it is exiting would decide its status.
    assert server.proc.wait(timeout=15) == 0
    assert server.stop() == 0


def test_port_in_use_is_reported_like_runserver(tmp_path, runservers):
    """A busy port gives runserver's message and exit status 1, not a traceback."""
    first = runservers(make_project(tmp_path), "--noreload")
    first.wait_until_serving()
    second = Runserver(tmp_path, ["--noreload"], env=first.env)
    second.port = first.port
    second.start()
    assert second.proc is not None
    wait_for(lambda: second.proc.poll() is not None, timeout=20)
    assert second.stop() == 1
    assert "Error: That port is already in use." in second.output


def test_autoreload_restarts_the_server_after_a_change(tmp_path, runservers, redis_url):
    """With the autoreloader, changing a module restarts the server process: websockets are
    closed with 1012 (service restart), and the new code serves HTTP and websockets."""
    project = make_project(tmp_path)
    server = runservers(project)
    server.wait_until_serving()
    server.wait_for_output(r"Watching for file changes with StatReloader")
    assert server.get("/") == (200, "version 1")
    views = project / "proj" / "views.py"
    views.write_text(VIEWS.format(text="version 2"))

    with server.connect("/ws/news?subscribe-broadcast") as ws:
        # The reloader compares modification times with the ones it saw first; move the
        # mtime forward until it notices (it looks once a second).
        def reloaded() -> bool:
            mtime = time.time() + 10 * (1 + len(server.lines))
            os.utime(views, (mtime, mtime))
            return bool(server.matches(r"views\.py changed, reloading"))

        wait_for(reloaded, timeout=20, interval=0.5)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

    server.wait_until_serving(count=2)
    assert server.get("/") == (200, "version 2")
    with server.connect("/ws/news?subscribe-broadcast") as ws:
        assert publish(redis_url, "news", "after the reload") == 1
        assert ws.recv(timeout=5) == "after the reload"
    assert server.stop() == 0


def test_without_the_app_first_djangos_runserver_answers_501(tmp_path, runservers):
    """With 'ws4redis_gevent' after 'django.contrib.staticfiles', Django's own runserver
    runs; the middleware in wsgi.py then answers websocket requests with 501 and a reason,
    and logs an error that says what to do."""
    apps = ["django.contrib.staticfiles", "ws4redis_gevent"]
    server = runservers(make_project(tmp_path, apps, wsgi=WRAPPED_WSGI), "--noreload")
    # Django 6 says "Starting WSGI development server at".
    server.wait_for_output(r"Starting (?:WSGI )?development server at http://127\.0\.0\.1:\d+/")
    assert server.get("/") == (200, "version 1")  # plain HTTP still works

    with pytest.raises(InvalidStatus) as refused:
        server.connect("/ws/news?subscribe-broadcast")
    assert refused.value.response.status_code == 501
    assert b"this server cannot serve websockets" in refused.value.response.body
    server.wait_for_output(r"websocket request to /ws/news on a server that cannot upgrade")
    assert "Websockets are served at" not in server.output
