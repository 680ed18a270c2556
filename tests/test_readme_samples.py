"""Every code sample of README.rst and docs/*.rst, exercised: Python compiles, and the
five-minute integration runs for real, step by step, in a new Django project.

The project (written into a temporary directory) is what ``django-admin startproject`` makes,
with README's samples applied unchanged but for these substitutions:

- step 1, settings: ``...`` in INSTALLED_APPS stands for the project's other apps (those of a
  startproject project not named in the sample), and the Redis URL is the test redis-server's
  (docs/recovery.rst's settings sample is added to them for its own test);
- step 2, ``wsgi.py``: preceded by startproject's ``DJANGO_SETTINGS_MODULE`` line;
- step 3, the gunicorn command: ``yourproject`` is the project, plus ``--bind`` and a worker;
- step 4, publishing: the body of a view (it uses the view's ``request``);
- step 5, the browser client: the body of a template (after ``{% load static %}``), opened in
  headless Chromium;
- Security, ``get_allowed_channels``: the module named by WS4REDIS_ALLOWED_CHANNELS.

Each sample is found by what it contains; a sample that no test claims fails
``test_every_sample_is_exercised``.
"""

from __future__ import annotations

import ast
import configparser
import http.cookiejar
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, expect
from redis_server import pubsub_channels
from runserver_process import Runserver
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytest_plugins = ["browser"]  # the chromium fixture

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DOCS = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]
DOC_REDIS_URL = "redis://localhost:6379/0"
USERS = {"john": ["chatters"], "mary": []}
PASSWORD = "readme-password"

# --- the samples -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A code block of a document: ``.. code-block:: LANG`` / ``.. code:: LANG``, or a literal
    block after ``::`` (language ``text``). ``tag`` is the reStructuredText comment
    ``.. tested-KIND: NAME`` right before it, if any: another test module runs that sample."""

    path: Path
    line: int
    language: str
    code: str
    tag: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")
TAG = re.compile(r"^\s*\.\. (tested-[\w-]+):\s*\S+\s*$")


def extract_samples(path: Path) -> list[Sample]:
    """The code blocks of an reStructuredText file, dedented."""
    lines = path.read_text(encoding="utf-8").splitlines()
    samples = []
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = DIRECTIVE.match(line)
        literal = (
            not directive and line.rstrip().endswith("::") and not line.lstrip().startswith("..")
        )
        if not (directive or literal):
            index += 1
            continue
        before = [text for text in lines[:index] if text.strip()][-1:]
        tag = TAG.match(before[0]) if before else None
        indent = len(line) - len(line.lstrip())
        language = (directive.group(2) or "text") if directive else "text"
        index += 1
        while index < len(lines) and re.match(r"^\s+:\w[\w-]*:", lines[index]):  # options
            index += 1
        body = []
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            body.append(lines[index])
            index += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code:
            start = index - len(body) + next(i for i, text in enumerate(body) if text.strip())
            samples.append(
                Sample(path, start + 1, language, code + "\n", tag.group(1) if tag else None)
            )
    return samples


SAMPLES = [sample for path in DOCS for sample in extract_samples(path)]

# The samples this module runs: (document, language, a text only that sample contains).
CLAIMS = {
    "settings": ("README.rst", "python", "WS4REDIS_CONNECTION = "),
    "wsgi": ("README.rst", "python", "application = WebsocketMiddleware("),
    "publish": ("README.rst", "python", ".publish_message("),
    "allowed channels": ("README.rst", "python", "def get_allowed_channels("),
    "browser client": ("README.rst", "html", "WS4Redis({"),
    "history settings": ("recovery.rst", "python", "WS4REDIS_HISTORY = {"),
    "recovery url": ("recovery.rst", "text", "&recover&since="),
}


def claimed_by(s: Sample) -> list[str]:
    return [
        name
        for name, (document, language, marker) in CLAIMS.items()
        if s.path.name == document and s.language == language and marker in s.code
    ]


def sample(name: str) -> str:
    """The code of the one sample claimed as ``name``."""
    found = [s for s in SAMPLES if name in claimed_by(s)]
    assert len(found) == 1, f"{name}: {len(found)} samples match {CLAIMS[name]}"
    return found[0].code


def shell_commands() -> list[list[str]]:
    """Every command of README's ``sh`` samples, split like a shell does (comments dropped,
    continued lines joined)."""
    commands = []
    for s in SAMPLES:
        if s.language == "sh" and s.path.name == "README.rst":
            text = s.code.replace("\\\n", " ")
            commands += [shlex.split(line, comments=True) for line in text.splitlines()]
    return [command for command in commands if command]


def gunicorn_command() -> list[str]:
    """README step 3's production command (README has exactly one gunicorn command)."""
    commands = [c for c in shell_commands() if c[0] == "gunicorn"]
    assert len(commands) == 1, commands
    return commands[0]


def modules_reading(tag: str) -> list[str]:
    """The other test modules that name ``tag`` (and so read the samples marked with it)."""
    return [
        path.name
        for path in sorted(TESTS.glob("*.py"))
        if path.name != Path(__file__).name and tag in path.read_text(encoding="utf-8")
    ]


def test_samples_are_found():
    """The extractor finds each claimed sample exactly once (so the tests below are not
    vacuous), and README's samples in the three languages it uses."""
    for name in CLAIMS:
        sample(name)
    readme = {s.language for s in SAMPLES if s.path.name == "README.rst"}
    assert readme == {"html", "python", "sh"}, readme


def test_every_sample_is_exercised():
    """Each sample of README.rst and docs/*.rst is run by a test: claimed by exactly one test of
    this module, a command of README's shell samples (checked below), or marked with a
    ``.. tested-KIND: NAME`` comment that another test module reads."""
    unexercised = []
    for s in SAMPLES:
        if s.language == "sh" and s.path.name == "README.rst":
            continue
        if s.tag is not None:
            if not modules_reading(s.tag):
                unexercised.append(f"{s.where} ({s.language}): no test module reads {s.tag}")
        elif len(claimed_by(s)) != 1:
            unexercised.append(f"{s.where} ({s.language}): claimed by {claimed_by(s)}")
    assert not unexercised, (
        "samples no test runs (run them, and claim them in CLAIMS here, or mark them with "
        "'.. tested-KIND: NAME' read by the test module that runs them):\n" + "\n".join(unexercised)
    )


@pytest.mark.parametrize(
    "python_sample", [s for s in SAMPLES if s.language == "python"], ids=lambda s: s.where
)
def test_python_sample_compiles(python_sample: Sample):
    """Every Python sample is valid Python."""
    compile(python_sample.code, python_sample.where, "exec")


def test_shell_samples_name_real_commands():
    """Every command of README's shell samples is one of: ``python3 dev.py COMMAND`` with a
    command dev.py has, ``pip install`` of this distribution with extras setup.cfg defines, or
    the gunicorn command that ``production`` below runs."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    name = setup["metadata"]["name"]
    extras = set(setup["options.extras_require"])
    usage = subprocess.run(
        [sys.executable, "dev.py"], cwd=ROOT, capture_output=True, text=True, timeout=10
    ).stderr
    unknown = []
    for command in shell_commands():
        if command[:2] == ["python3", "dev.py"]:
            assert len(command) == 3 and f"python3 dev.py {command[2]}" in usage, command
        elif command[:2] == ["pip", "install"]:
            match = re.fullmatch(r"([\w-]+)(?:\[([\w,]+)\])?", command[2])
            assert match and len(command) == 3, command
            assert match.group(1) == name, command
            assert set(filter(None, (match.group(2) or "").split(","))) <= extras, command
        elif command != gunicorn_command():
            unknown.append(command)
    assert not unknown, f"shell samples no test runs: {unknown}"


# --- the project of the five-minute integration ---------------------------------------------

STARTPROJECT_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

SETTINGS_HEAD = '''\
"""What startproject writes (a few test-only lines marked), then README's step 1."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "readme-samples-test-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = {apps!r}
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "proj.urls"
TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        }},
    }},
]
WSGI_APPLICATION = "proj.wsgi.application"
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test-only: fast
if os.environ.get("README_ALLOWED_CHANNELS"):  # test-only: the Security sample's server
    WS4REDIS_ALLOWED_CHANNELS = "proj.allowed.get_allowed_channels"
if os.environ.get("README_HISTORY"):  # test-only: docs/recovery.rst's settings sample
    from proj.history_settings import *  # noqa: F403

# README, "Add websockets to a Django project in five minutes", step 1:
'''

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

URLS = """\
from django.urls import path

from proj import views

urlpatterns = [
    path("login/", views.login_view),
    path("publish/", views.publish),
    path("page/", views.page),
]
"""

VIEWS = '''\
from django.contrib.auth import authenticate, login
from django.http import HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def login_view(request):
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return HttpResponseForbidden("wrong username or password")
    login(request, user)
    return HttpResponse("signed in")


@csrf_exempt
def publish(request):
    """README step 4, as the body of a view."""
{publish}
    return HttpResponse("published")


def page(request):
    """README step 5, as the body of a template."""
    return render(request, "readme_sample.html")
'''

PAGE = """\
{{% load static %}}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>README step 5</title></head>
<body>
{html}
</body>
</html>
"""

CREATE_USERS = f"""\
from django.contrib.auth.models import Group, User

for name, groups in {USERS!r}.items():
    user = User.objects.create_user(name, password={PASSWORD!r})
    user.groups.set([Group.objects.get_or_create(name=group)[0] for group in groups])
"""


def readme_settings(redis_url: str) -> str:
    """README's step 1 applied to a startproject settings module."""
    block = sample("settings")
    apps_line = next(line for line in block.splitlines() if line.startswith("INSTALLED_APPS"))
    assert apps_line.count("...,") == 1 and DOC_REDIS_URL in block, block
    assignment = next(
        node
        for node in ast.parse(block).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "INSTALLED_APPS"
    )
    named = {e.value for e in ast.walk(assignment.value) if isinstance(e, ast.Constant)}
    others = [app for app in STARTPROJECT_APPS if app not in named]
    block = block.replace(apps_line, apps_line.replace("...,", "*OTHER_APPS,")).replace(
        DOC_REDIS_URL, redis_url
    )
    head = SETTINGS_HEAD.format(apps=STARTPROJECT_APPS)
    return f"{head}OTHER_APPS = {others!r}  # README's '...'\n{block}"


@pytest.fixture(scope="module")
def project(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new Django project with README's samples applied; migrated, with users john and mary."""
    base = tmp_path_factory.mktemp("readme")
    package = base / "proj"
    package.mkdir()
    (base / "templates").mkdir()
    files = {
        base / "manage.py": MANAGE,
        package / "__init__.py": "",
        package / "settings.py": readme_settings(redis_server.url),
        package / "urls.py": URLS,
        package / "views.py": VIEWS.format(publish=textwrap.indent(sample("publish"), "    ")),
        package / "wsgi.py": 'import os\n\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", '
        '"proj.settings")\n\n' + sample("wsgi"),
        package / "allowed.py": sample("allowed channels"),
        package / "history_settings.py": sample("history settings"),
        base / "templates" / "readme_sample.html": PAGE.format(html=sample("browser client")),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    manage(base, "migrate", "--noinput")
    manage(base, "shell", "-c", CREATE_USERS)
    return base


def manage(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``python manage.py ARGS`` in the project; its output (fails the test on an error)."""
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Gunicorn:
    """README step 3's production command, in a subprocess, on a port gunicorn picks."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        command = [
            str(Path(sys.executable).with_name("gunicorn")) if arg == "gunicorn" else arg
            for arg in gunicorn_command()
        ]
        command = [arg.replace("yourproject", "proj") for arg in command]
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        self.proc = subprocess.Popen(
            [*command, "--bind", "127.0.0.1:0", "--workers", "1"],
            cwd=project,
            env={**environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.port = self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 20.0) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        port = None
        while port is None or not any("Booting worker" in line for line in self.log):
            line = self.proc.stderr.readline()  # gunicorn logs a line per step: no hang
            self.log.append(line)
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else port
            if not line or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("gunicorn did not start:\n" + "".join(self.log))
        return port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, path: str, **kwargs) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=10, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module")
def production(project: Path) -> Iterator[Gunicorn]:
    """The project served by README's gunicorn command."""
    server = Gunicorn(project, {})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def restricted(project: Path) -> Iterator[Gunicorn]:
    """The same, with WS4REDIS_ALLOWED_CHANNELS pointing to the Security sample."""
    server = Gunicorn(project, {"README_ALLOWED_CHANNELS": "1"})
    yield server
    server.stop()


class Visitor:
    """An HTTP client keeping cookies: signs in, calls views, opens websockets with them."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def post(self, path: str, data: dict[str, str] | None = None) -> str:
        body = urllib.parse.urlencode(data or {}).encode()
        with self.opener.open(self.server.http_url + path, body, timeout=10) as response:
            return response.read().decode()

    def sign_in(self, username: str) -> Visitor:
        assert self.post("/login/", {"username": username, "password": PASSWORD}) == "signed in"
        return self

    def connect(self, path: str) -> ClientConnection:
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        return self.server.connect(path, additional_headers={"Cookie": cookies} if cookies else {})


# --- the five-minute integration, step by step ----------------------------------------------


def test_settings_sample_configures_the_project(project, redis_url):
    """Step 1 applied to a startproject project: ``manage.py check`` passes, and ws4redis_gevent
    reads the sample's values from Django's settings."""
    manage(project, "check")
    code = (
        "from ws4redis_gevent.settings import load; s = load(); "
        "print(s.websocket_url, s.connection, s.expire, s.heartbeat)"
    )
    last_line = manage(project, "shell", "-c", code).splitlines()[-1]
    assert last_line.split() == [
        "/ws/",
        redis_url,
        "3600",
        "--heartbeat--",
    ]


def test_publish_samples_reach_subscribed_websockets(production, redis_url):
    """Steps 2 to 4 under gunicorn: the view running the publish sample sends "Hello" to every
    ``news?subscribe-broadcast`` websocket and "for me" to the requesting user's
    ``inbox?subscribe-user`` websockets only."""
    john, mary = Visitor(production).sign_in("john"), Visitor(production).sign_in("mary")
    with (
        Visitor(production).connect("/ws/news?subscribe-broadcast") as anonymous,
        john.connect("/ws/inbox?subscribe-user") as john_inbox,
        mary.connect("/ws/inbox?subscribe-user") as mary_inbox,
    ):
        assert john.post("/publish/") == "published"
        assert anonymous.recv(timeout=5) == "Hello"
        assert john_inbox.recv(timeout=5) == "for me"
        publisher = RedisPublisher(
            facility="inbox", users=["mary"], settings=Settings(connection=redis_url)
        )
        publisher.publish_message("for mary")
        assert mary_inbox.recv(timeout=5) == "for mary"  # john's, published before, never came


def test_allowed_channels_sample_refuses_anonymous_clients(restricted):
    """The Security sample: an anonymous client gets 403 with the sample's reason."""
    with pytest.raises(InvalidStatus) as refused:
        Visitor(restricted).connect("/ws/news?subscribe-broadcast")
    assert refused.value.response.status_code == 403
    assert b"log in first" in refused.value.response.body


def test_allowed_channels_sample_keeps_only_its_flags(restricted, redis_server, redis_url):
    """The Security sample: a signed-in client asking for broadcast, user, group and
    publish-broadcast is subscribed to the broadcast and user channels only, and what it sends
    is not published."""
    john = Visitor(restricted).sign_in("john")
    flags = "subscribe-broadcast&subscribe-user&subscribe-group&publish-broadcast"
    with (
        redis.Redis.from_url(redis_url) as client,
        client.pubsub() as listener,
        john.connect(f"/ws/guarded?{flags}") as ws,
    ):
        channels = {c.decode() for c in pubsub_channels(redis_server) if b"guarded" in c}
        assert channels == {"broadcast:guarded", "user:john:guarded"}  # not group:chatters
        listener.subscribe("broadcast:guarded")
        assert listener.get_message(timeout=5)["type"] == "subscribe"
        ws.send("not allowed to publish")
        assert ws.ping().wait(5)  # frames are handled in order: it would be published by now
        client.publish("broadcast:guarded", "from the server")
        assert listener.get_message(timeout=5)["data"] == b"from the server"
        assert ws.recv(timeout=5) == "from the server"


# Test instrumentation (the sample keeps no reference to its client): note when a websocket
# of the page opens.
NOTE_OPEN_WEBSOCKETS = """
window.__openWebsockets = 0;
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = new NativeWebSocket(url, protocols);
  ws.addEventListener("open", () => { window.__openWebsockets += 1; });
  return ws;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
"""


def test_browser_client_sample_receives_in_chromium(project, chromium: Browser, redis_url):
    """Steps 3 and 5: ``manage.py runserver`` (ws4redis', per step 3) serves the page made of
    the browser-client sample; in Chromium it connects to ``news?subscribe-broadcast`` and
    logs what RedisPublisher broadcasts."""
    server = Runserver(project, ["--noreload"]).start()
    context = chromium.new_context()
    try:
        server.wait_until_serving()
        context.add_init_script(NOTE_OPEN_WEBSOCKETS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.http_url}/page/")
        try:
            page.wait_for_function("window.__openWebsockets > 0")
        except Exception as exc:
            raise AssertionError(f"{exc}\n{errors}\n--- runserver:\n{server.output}") from None
        publisher = RedisPublisher(
            facility="news", broadcast=True, settings=Settings(connection=redis_url)
        )
        with page.expect_console_message(lambda m: m.text == "Hello from the test") as logged:
            publisher.publish_message("Hello from the test")
        assert logged.value.type == "log"
        expect(page.locator("script[src='/static/ws4redis_gevent/ws4redis.js']")).to_have_count(1)
        assert errors == []
    finally:
        context.close()
        server.stop()


# --- docs/recovery.rst ----------------------------------------------------------------------


def history_setting() -> dict:
    """The value recovery.rst's settings sample assigns."""
    namespace: dict = {}
    exec(sample("history settings"), namespace)
    return namespace["WS4REDIS_HISTORY"]


def test_history_settings_sample_turns_history_on(project, redis_url):
    """The sample, in the project's Django settings: ws4redis_gevent reads it, and RedisPublisher
    appends to ``CHANNEL:@history`` for "chat" and, through "*", for any other facility."""
    code = (
        "from ws4redis_gevent.publisher import RedisPublisher\n"
        "from ws4redis_gevent.settings import load\n"
        "for facility in ('chat', 'news'):\n"
        "    RedisPublisher(facility=facility, broadcast=True).publish_message('kept')\n"
        "print(repr(load().history))\n"
    )
    output = manage(project, "shell", "-c", code, env={"README_HISTORY": "1"})
    assert ast.literal_eval(output.splitlines()[-1]) == history_setting()
    with redis.Redis.from_url(redis_url) as client:
        for facility in ("chat", "news"):
            entries = client.xrange(f"broadcast:{facility}:@history")
            assert len(entries) == 1 and b"kept" in entries[0][1].values(), (facility, entries)


def test_recovery_url_sample_is_answered_as_documented(start_server, redis_url):
    """The sample's URL (host and prefix aside): the doc's position is from an epoch this Redis
    never had, so the client is told ``!resync broadcast``; the subscribe-user flag of an
    anonymous client is dropped; then live messages arrive as ``LABEL POSITION\\nPAYLOAD``."""
    url = urllib.parse.urlsplit(sample("recovery url").strip())
    assert url.scheme == "ws" and url.path.startswith("/ws/"), url
    server = start_server(history=history_setting(), expire=0)
    with server.connect(f"{url.path}?{url.query}") as ws:
        assert ws.recv(timeout=5) == "!resync broadcast"
        settings = Settings(connection=redis_url, history=history_setting(), expire=0)
        facility = url.path.removeprefix("/ws/")
        RedisPublisher(facility=facility, broadcast=True, settings=settings).publish_message("hi")
        frame = ws.recv(timeout=5)
        assert re.fullmatch(r"broadcast [0-9a-f]+:\d+-\d+\nhi", frame), frame
