"""The demo site, used as a person would: sign in, open the chat's websocket, send to each of
the four audiences (broadcast, user, group, session), reload and see the stored messages.

The demo runs with ``manage.py runserver --noreload`` on a free port, with its own sqlite file
(migrated here, which creates the demo users) and the test redis-server.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runserver_process import Runserver
from websockets.sync.client import ClientConnection

DEMO = Path(__file__).resolve().parent.parent / "demo_site"
HEARTBEAT = "--heartbeat--"
ALL_FLAGS = (
    "subscribe-broadcast&subscribe-user&subscribe-group&subscribe-session&publish-broadcast&echo"
)
CHAT = f"/ws/chat?{ALL_FLAGS}"


@pytest.fixture(scope="module")
def demo(redis_server, tmp_path_factory) -> Iterator[Runserver]:
    """The demo site on a free port, with a freshly migrated database."""
    database = tmp_path_factory.mktemp("demo") / "db.sqlite3"
    env = {"DEMO_DATABASE": str(database), "REDIS_URL": redis_server.url}
    server = Runserver(DEMO, ["--noreload"], env=env)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=DEMO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    server.start()
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


class Browser:
    """A cookie-keeping HTTP client, enough for Django's login and CSRF protection."""

    def __init__(self, server: Runserver) -> None:
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path: str, data: dict[str, str] | None = None, **headers: str) -> Any:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.server.http_url + path, body, headers)
        try:
            response = self.opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            response = exc
        with response:
            response.text = response.read().decode()
        return response

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def post(self, path: str, data: dict[str, str], **headers: str) -> Any:
        if not self._has("csrftoken"):
            self.open("/login/")  # any page with a form sets the CSRF cookie
        return self.open(path, {"csrfmiddlewaretoken": self.cookie("csrftoken"), **data}, **headers)

    def _has(self, name: str) -> bool:
        return any(c.name == name for c in self.jar)

    def login(self, username: str) -> None:
        page = self.post("/login/", {"username": username, "password": "demo"})
        assert page.status == 200 and page.url == self.server.http_url + "/", page.text
        assert f'Signed in as <strong id="me">{username}</strong>' in page.text

    def send(self, audience: str, text: str, to: str = "") -> Any:
        """What the page's forms do with fetch(): POST /send/ asking for JSON."""
        data = {"audience": audience, "to": to, "text": text}
        return self.post("/send/", data, Accept="application/json")

    def websocket(self, path: str = CHAT) -> ClientConnection:
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        headers = {"Cookie": cookies} if cookies else {}
        return self.server.connect(path, additional_headers=headers)


def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next chat message (heartbeats skipped), decoded."""
    while True:
        data = ws.recv(timeout=timeout)
        if data != HEARTBEAT:
            return json.loads(data)


def synchronise(ws: ClientConnection) -> None:
    """Wait until the server has handled every frame sent so far on ``ws``: frames are
    handled in order, and the heartbeat is answered by the same loop that publishes."""
    ws.send(HEARTBEAT)
    assert ws.recv(timeout=5) == HEARTBEAT


def say(ws: ClientConnection, sender: str, text: str) -> None:
    """What the page's room form does: publish a JSON message through the websocket."""
    message = {"id": text, "kind": "broadcast", "from": sender, "to": "everyone", "text": text}
    ws.send(json.dumps(message))


@pytest.fixture
def alice(demo, redis_url) -> Browser:
    browser = Browser(demo)
    browser.login("alice")
    return browser


@pytest.fixture
def bob(demo, redis_url) -> Browser:
    browser = Browser(demo)
    browser.login("bob")
    return browser


def test_chat_page_and_static_files(demo, alice):
    """The chat page carries the websocket URI and heartbeat from the context processor, the
    signed-in user's audiences, and the client scripts, which are served."""
    page = alice.open("/")
    assert f'"ws://127.0.0.1:{demo.port}/ws/chat?{ALL_FLAGS}"' in page.text
    assert f'heartbeat: "{HEARTBEAT}"' in page.text
    assert '<span id="ws-state" class="state" data-state="connecting">' in page.text
    assert "<option>bob</option>" in page.text and "<option>hikers</option>" in page.text
    assert "<option>readers</option>" not in page.text  # alice is not a reader
    for script in ("ws4redis_gevent/ws4redis.js", "chat/chat.js"):
        assert f'src="/static/{script}"' in page.text
        response = alice.open(f"/static/{script}")
        assert response.status == 200 and "WS4Redis" in response.text


def test_anonymous_visitors_only_listen_to_the_room(demo, alice):
    """Anonymous visitors see the room; WS4REDIS_ALLOWED_CHANNELS drops every other flag, so
    what they send through the websocket is not published."""
    page = Browser(demo).open("/")
    assert page.status == 200 and "anonymous visitors may" in page.text.lower()
    with Browser(demo).websocket() as anonymous, alice.websocket() as talker:
        say(talker, "alice", "hello room")
        assert receive(anonymous)["text"] == "hello room"
        assert receive(talker)["text"] == "hello room"  # &echo
        say(anonymous, "mallory", "spam")
        synchronise(anonymous)
        say(talker, "alice", "after the spam")
        assert receive(talker)["text"] == "after the spam"
        assert receive(anonymous)["text"] == "after the spam"


def test_direct_messages_reach_the_recipient_and_the_sender(demo, alice, bob):
    """A direct message, published by the view with RedisPublisher(users=[...]), reaches the
    recipient's websocket and the sender's; the JSON answer counts the receivers."""
    with alice.websocket() as alice_ws, bob.websocket() as bob_ws:
        response = alice.send("user", "psst", to="bob")
        assert response.status == 200
        assert json.loads(response.text)["receivers"] == 2
        for ws in (bob_ws, alice_ws):
            message = receive(ws)
            assert (message["kind"], message["from"], message["to"]) == ("user", "alice", "bob")
            assert message["text"] == "psst"
        assert alice.send("user", "hi", to="nobody").status == 400


def test_group_messages_reach_members_only_from_members(demo, alice, bob):
    """A message to a group reaches its members; a user cannot send to a group they are not in."""
    with alice.websocket() as alice_ws, bob.websocket() as bob_ws:
        response = bob.send("group", "book club tonight", to="readers")
        assert response.status == 200
        message = receive(bob_ws)
        assert (message["kind"], message["to"], message["text"]) == (
            "group",
            "readers",
            "book club tonight",
        )
        assert alice.send("group", "let me in", to="readers").status == 403
        assert alice.send("group", "trail at 9", to="hikers").status == 200
        for ws in (alice_ws, bob_ws):  # alice never got the readers' message
            assert receive(ws)["text"] == "trail at 9"


def test_session_notification_from_a_form_post(demo, alice, bob):
    """The session form is a plain POST: the view publishes to SELF's session and redirects
    back; only the websockets of that session receive it."""
    with alice.websocket() as alice_ws, bob.websocket() as bob_ws:
        page = alice.post("/send/", {"audience": "session", "text": "your report is ready"})
        assert page.status == 200 and page.url == demo.http_url + "/"
        message = receive(alice_ws)
        assert (message["kind"], message["text"]) == ("session", "your report is ready")
        say(bob_ws, "bob", "bob was here")
        assert receive(bob_ws)["text"] == "bob was here"  # and no notification before it


def test_reload_brings_back_each_channels_last_message(demo, alice):
    """After a reload (a new websocket), the stored last message of each of the user's
    channels is delivered again (WS4REDIS_EXPIRE)."""
    with alice.websocket() as ws:
        say(ws, "alice", "last in the room")
        receive(ws)
        alice.send("user", "note to self", to="alice")
        alice.send("group", "last for hikers", to="hikers")
        alice.post("/send/", {"audience": "session", "text": "last for the session"})
        assert len([receive(ws) for _ in range(3)]) == 3
    with alice.websocket() as ws:
        stored = {message["kind"]: message["text"] for message in (receive(ws) for _ in range(4))}
    assert stored == {
        "broadcast": "last in the room",
        "user": "note to self",
        "group": "last for hikers",
        "session": "last for the session",
    }
