"""The chat page in a real browser against the live server: it connects its websocket and shows
what the server publishes (pytest only; needs Playwright and a Chromium, else skipped)."""

import json
import os
import shutil

import pytest

from ws4redis_gevent.publisher import RedisPublisher

CHROMIUM = os.environ.get("WS4REDIS_TEST_CHROMIUM") or shutil.which("chromium")
TIMEOUT_MS = 10_000


@pytest.fixture
def browser_page(ws4redis_live_server, monkeypatch):
    """(Playwright's sync API, a page of headless Chromium)."""
    # Imported here, not at import: manage.py test also imports this module (it finds no test
    # case class in it), with or without Playwright.
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM:
        pytest.skip("no Chromium: set WS4REDIS_TEST_CHROMIUM or install chromium")
    # Playwright's sync API runs an asyncio loop in this thread, which Django takes for an
    # async context: its documented way out for such tests.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True,
        )
        try:
            yield sync_api, browser.new_page()
        finally:
            browser.close()


def test_the_page_shows_a_broadcast(browser_page, ws4redis_live_server):
    sync_api, page = browser_page
    page.goto(ws4redis_live_server.url + "/")
    state = page.locator("#ws-state")
    sync_api.expect(state).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    message = {"id": "1", "kind": "broadcast", "from": "the test", "to": "",
               "text": "published by the test", "at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    RedisPublisher(facility="chat", broadcast=True).publish_message(json.dumps(message))
    sync_api.expect(page.get_by_text("published by the test")).to_be_visible(timeout=TIMEOUT_MS)
