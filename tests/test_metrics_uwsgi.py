"""Metrics in multiprocess mode under uWSGI: 2 worker processes, figures summed over both
whichever worker a scrape reaches."""

from __future__ import annotations

import contextlib

import pytest
from conftest import wait_for
from test_metrics import samples, value
from test_uwsgi_backend import uwsgi  # noqa: F401 (the fixture)

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

CLIENTS = 6
MESSAGES = 4


def test_uwsgi_workers_share_their_figures(uwsgi, redis_url, tmp_path, monkeypatch):  # noqa: F811
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc))
    stack = uwsgi("http-socket", "--processes", "2", metrics=True, metrics_url="/metrics")
    publisher = RedisPublisher(
        facility="news", broadcast=True, settings=Settings(connection=redis_url)
    )
    with contextlib.ExitStack() as websockets:
        clients = [
            websockets.enter_context(stack.connect("/ws/news?subscribe-broadcast"))
            for _ in range(CLIENTS)
        ]
        for i in range(MESSAGES):
            publisher.publish_message(f"m{i}", expire=0)
        for ws in clients:
            assert [ws.recv(timeout=5) for _ in range(MESSAGES)] == [
                f"m{i}" for i in range(MESSAGES)
            ]

    def scrape() -> dict:
        status, body = stack.get("/metrics")
        assert status == 200
        return samples(body.decode())

    def pids() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in multiproc.glob("*.db")}

    # Scrapes reach either worker; each answers for both once both have synced.
    def settled() -> bool:
        figures = scrape()
        return (
            value(figures, "ws4redis_messages_sent_total") == CLIENTS * MESSAGES
            and value(figures, "ws4redis_handshakes_total", status="101") == CLIENTS
            and value(figures, "ws4redis_websockets_open", backend="uwsgi") == 0
            and len(pids())
            >= 3  # the master's files (metrics built before the fork) and 2 workers'
        )

    wait_for(settled, timeout=15, interval=0.2)
    for _ in range(10):  # every answer, from whichever worker, has the same totals
        assert value(scrape(), "ws4redis_messages_sent_total") == CLIENTS * MESSAGES
