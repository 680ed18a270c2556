"""The examples of docs/wsgi.rst, run as a user runs them: the Flask app in real headless
Chromium (its page subscribes with ws4redis.js, its view publishes with RedisPublisher), the
bare WSGI callable with a real websocket client. Each is a server process of its own
(``python examples/.../app.py 0``, gevent's pywsgi on a free port)."""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from stacks import Process
from websockets.sync.client import connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytest_plugins = ["browser"]  # the chromium fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def serve_example(redis_url) -> Iterator:
    processes: list[Process] = []
    workdir = Path(tempfile.mkdtemp(prefix="ws4redis-example-"))

    def start(name: str) -> str:
        env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, str(EXAMPLES / name / "app.py"), "0"]
        process = Process(name, cmd, workdir / f"{name}.log", env)
        processes.append(process)
        return process.wait_for_output(r"serving on (http://\S+/)").group(1)

    yield start
    for process in processes:
        process.stop()
        assert "Traceback" not in process.output(), process.output()


def test_flask_example_in_a_browser(serve_example, chromium, redis_url):
    """Two pages of the Flask example: a message posted in one (its view publishes) shows in
    both, and so does one published from elsewhere with RedisPublisher."""
    url = serve_example("flask_app")
    pages = [chromium.new_page() for _ in range(2)]
    for page in pages:
        page.goto(url)
        expect(page.locator("#ws-state")).to_have_attribute("data-state", "connected")
    pages[0].fill("#text", "hello from page one")
    pages[0].click("button[type=submit]")
    for page in pages:
        expect(page.locator("#messages li")).to_have_text(["hello from page one"])
    publisher = RedisPublisher(
        facility="news", broadcast=True, settings=Settings(connection=redis_url)
    )
    publisher.publish_message("from the server side")
    for page in pages:
        expect(page.locator("#messages li")).to_have_text(
            ["hello from page one", "from the server side"]
        )
        page.close()


def test_bare_wsgi_example_with_a_websocket_client(serve_example):
    """The bare WSGI callable: plain requests reach it, /publish reaches a subscribed
    websocket client, and a client may not publish (no publish flag is honoured there)."""
    url = serve_example("bare_wsgi")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"hello from a bare WSGI app\n"
    ws_url = url.replace("http://", "ws://") + "ws/ticker?subscribe-broadcast"
    with connect(ws_url, open_timeout=10) as ws:
        query = urllib.parse.urlencode({"text": "tick ✓"})
        with urllib.request.urlopen(f"{url}publish?{query}", timeout=10) as response:
            assert response.read() == b"published\n"
        assert ws.recv(timeout=5) == "tick ✓"


def test_docs_show_the_examples_code():
    """Each code block of docs/wsgi.rst marked ``.. tested-examples: PATH`` is a verbatim part of
    examples/PATH, so the documented code is the code these tests run."""
    from test_readme_samples import extract_samples

    samples = [s for s in extract_samples(ROOT / "docs" / "wsgi.rst") if s.tag]
    assert len(samples) == 4
    for sample in samples:
        assert sample.tag == "tested-examples"
        before = (ROOT / "docs" / "wsgi.rst").read_text().splitlines()[: sample.line]
        tag_line = next(line for line in reversed(before) if "tested-examples:" in line)
        source = (EXAMPLES / tag_line.split(":", 1)[1].strip()).read_text()
        assert _dedented(sample.code) in _dedented(source), sample.where


def _dedented(code: str) -> str:
    return "\n".join(line.strip() for line in code.splitlines())
