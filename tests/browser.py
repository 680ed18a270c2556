"""Fixtures and helpers of the browser tests: the demo site driven by real headless Chromium.

Chromium is Debian's package (``/usr/bin/chromium``, installed by ``python3 dev.py test`` as
root when missing); Playwright's Python package drives it (its own browser download is not
used). The demo runs with ``manage.py runserver --noreload`` on a free port, against the test
redis-server, with its own migrated sqlite file (which creates alice, bob and carol).

Test modules load the fixtures as a plugin: ``pytest_plugins = ["browser"]``.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored).

While the ``chromium`` fixture is alive, Playwright's sync API keeps an asyncio loop running
in the test thread: Django code run in the test process then raises SynchronousOnlyOperation
on database access. Run Django in subprocesses (manage.py) in modules that use a browser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from runserver_process import Runserver

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo_site"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = (
    os.environ.get("WS4REDIS_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
LAUNCH_ARGS = [
    "--no-sandbox",  # the tests may run as root (CI containers)
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000  # every wait on the page (expect, wait_for_*) gives up after this

# Records every value the page's state badge takes (connecting, connected, reconnecting), so a
# test can check the sequence a client went through, not only where it is now.
STATE_HISTORY = """
window.__wsStates = [];
document.addEventListener("DOMContentLoaded", function () {
  var badge = document.getElementById("ws-state");
  if (!badge) { return; }
  function record() {
    var states = window.__wsStates;
    if (states[states.length - 1] !== badge.dataset.state) { states.push(badge.dataset.state); }
  }
  record();
  new MutationObserver(record).observe(badge, {attributes: true, attributeFilter: ["data-state"]});
});
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium, launched once per module; skipped only when it is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package "
            "(`python3 dev.py test` does it with apt-get when run as root)"
        )
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo_database(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated sqlite file for the demo (the migration creates the demo users)."""
    database = tmp_path_factory.mktemp("browser-demo") / "db.sqlite3"
    env = demo_env(redis_server.url, database)
    # Not the test project's settings, which Django tests of this run may have put in the
    # environment (django_fixtures): the demo's manage.py only sets its own by default.
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=DEMO,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return database


def demo_env(redis_url: str, database: Path) -> dict[str, str]:
    return {"DEMO_DATABASE": str(database), "REDIS_URL": redis_url}


def start_demo(redis_url: str, database: Path) -> Runserver:
    """The demo's ``manage.py runserver --noreload`` on a free port, serving."""
    server = Runserver(DEMO, ["--noreload"], env=demo_env(redis_url, database)).start()
    try:
        server.wait_until_serving()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def demo(redis_server, demo_database: Path) -> Iterator[Runserver]:
    """The demo site, shared by the tests of a module (each test's Redis is flushed)."""
    server = start_demo(redis_server.url, demo_database)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_demo(redis_server, demo_database: Path) -> Iterator[Runserver]:
    """A demo server of the test's own (for tests that stop and start it), stopped at the end."""
    server = start_demo(redis_server.url, demo_database)
    try:
        yield server
    finally:
        server.stop()


class ChatPage:
    """The demo's chat page in a browser context of its own (its own cookies: one user)."""

    def __init__(self, page: Page, server: Runserver) -> None:
        self.page = page
        self.server = server

    @property
    def state(self) -> Locator:
        """The websocket state badge: data-state is connecting, connected or reconnecting."""
        return self.page.locator("#ws-state")

    def sign_in(self, username: str) -> ChatPage:
        """Click the user's button on the login page; land on the chat, connected."""
        self.page.goto(f"{self.server.http_url}/login/")
        self.page.get_by_role("button", name=re.compile(rf"^{username}\b")).click()
        expect(self.page.locator("#me")).to_have_text(username)
        self.expect_state("connected")
        return self

    def open_anonymously(self) -> ChatPage:
        self.page.goto(f"{self.server.http_url}/")
        self.expect_state("connected")
        return self

    def open_signed_in(self, username: str) -> ChatPage:
        """Open the chat with the cookies of an earlier sign-in (a returning user)."""
        self.page.goto(f"{self.server.http_url}/")
        expect(self.page.locator("#me")).to_have_text(username)
        self.expect_state("connected")
        return self

    def expect_state(self, state: str, timeout: float = TIMEOUT_MS) -> None:
        try:
            expect(self.state).to_have_attribute("data-state", state, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- runserver output:\n{self.server_log()}") from None

    def wait_for_state(self, state: str, timeout: float = TIMEOUT_MS) -> None:
        """Wait until the badge shows ``state`` (polled on every animation frame)."""
        try:
            self.page.wait_for_selector(f'#ws-state[data-state="{state}"]', timeout=timeout)
        except PlaywrightError as exc:
            raise AssertionError(f"{exc}\n--- runserver output:\n{self.server_log()}") from None

    def server_log(self, lines: int = 40) -> str:
        return "\n".join(self.server.output.splitlines()[-lines:])

    def state_history(self) -> list[str]:
        """Every state the badge showed since the page loaded, in order."""
        return self.page.evaluate("window.__wsStates.slice()")

    def messages(self, kind: str) -> Locator:
        """The texts shown in the panel of ``kind`` (broadcast, user, group, session)."""
        return self.page.locator(f"#panel-{kind} .messages li .text")

    def metas(self, kind: str) -> Locator:
        """The "time · from → to" lines of the panel of ``kind``."""
        return self.page.locator(f"#panel-{kind} .messages li .meta")

    def say(self, text: str) -> None:
        """Type into the room's form and send (published by the browser's websocket)."""
        form = self.page.locator("#room-form")
        form.locator("input[name=text]").fill(text)
        form.get_by_role("button", name="Send").click()
        expect(form.locator("input[name=text]")).to_have_value("")  # sent, not refused

    def send(self, kind: str, to: str, text: str) -> None:
        """Send with the direct-message (``user``) or group form: a fetch() POST to /send/."""
        form = self.page.locator(f"#panel-{kind} form")
        form.locator("select[name=to]").select_option(to)
        form.locator("input[name=text]").fill(text)
        form.get_by_role("button", name="Send").click()
        expect(form.locator("input[name=text]")).to_have_value("")  # the view answered 200
        expect(self.page.locator("#error")).to_be_hidden()

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as test-artifacts/screenshots/NAME.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def signed_in() -> dict[str, Any]:
    """Cookies of each user's first sign-in in the module (Playwright storage states): later
    pages of that user reuse them instead of hashing the password again."""
    return {}


@pytest.fixture
def open_chat(
    chromium: Browser, signed_in: dict[str, Any], redis_url: str
) -> Iterator[Callable[[Runserver, str | None], ChatPage]]:
    """``open_chat(server, username)``: a new browser context (its own cookies) on the chat page
    as ``username`` (None: an anonymous visitor), connected. The first time a user is asked for
    in a module, they sign in through the login page. Contexts are closed after the test."""
    contexts: list[BrowserContext] = []

    def open_page(server: Runserver, username: str | None) -> ChatPage:
        state = signed_in.get(username) if username else None
        context = chromium.new_context(viewport={"width": 1280, "height": 800}, storage_state=state)
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(STATE_HISTORY)
        chat = ChatPage(context.new_page(), server)
        if username is None:
            return chat.open_anonymously()
        if state is not None:
            return chat.open_signed_in(username)
        chat.sign_in(username)
        signed_in[username] = context.storage_state()
        return chat

    yield open_page
    for context in contexts:
        context.close()
