"""A real Prometheus server scrapes gunicorn with 2 workers (multiprocess mode); the figures
read back through Prometheus' HTTP API match the traffic the test sent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for
from redis_server import free_port
from test_gunicorn import start_gunicorn
from websockets.sync.client import connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SUBSCRIBERS = 10
PUBLISHERS = 3
MESSAGES = 7

CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ws4redis
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus; returns a function that points it at a port and gives its URL."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("no prometheus binary (python3 dev.py test installs Debian's package)")
    procs = []

    def start(target_port: int) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(CONFIG.format(port=target_port))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url, proc, tmp_path / "prometheus.log"), timeout=30)
        return url

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(url: str, proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail("prometheus exited:\n" + log.read_text())
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def query(url: str, expression: str) -> float | None:
    """The value of an instant query with one result, None when it has none."""
    address = f"{url}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(address, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_reads_the_figures_of_both_workers(prometheus, redis_url, tmp_path):
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    try:
        proc, port = start_gunicorn(
            redis_url,
            "--workers",
            "2",
            options={"metrics": True, "metrics_url": "/metrics"},
        )
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        # Each worker builds the middleware, and with it its metrics files.
        wait_for(lambda: len({p.stem.rsplit("_", 1)[1] for p in multiproc.glob("*.db")}) == 2)
        url = prometheus(port)
        wait_for(lambda: query(url, 'up{job="ws4redis"}') == 1, timeout=30)
        send_known_traffic(port, redis_url)
        expected = {
            'sum(ws4redis_handshakes_total{status="101"})': SUBSCRIBERS + PUBLISHERS,
            "sum(ws4redis_messages_sent_total)": SUBSCRIBERS * (MESSAGES + PUBLISHERS),
            "sum(ws4redis_messages_received_total)": PUBLISHERS,
            "sum(ws4redis_publishes_total)": PUBLISHERS,
            'sum(ws4redis_closes_received_total{code="1000"})': SUBSCRIBERS + PUBLISHERS,
            "sum(ws4redis_websockets_open)": 0,
        }

        def figures():
            return {expr: query(url, expr) for expr in expected}

        try:
            wait_for(lambda: figures() == expected, timeout=30, interval=0.5)
        except AssertionError:
            assert figures() == expected
        assert query(url, "sum(ws4redis_hub_lag_seconds_count)") >= 1
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def send_known_traffic(port: int, redis_url: str) -> None:
    """SUBSCRIBERS websockets receive MESSAGES published from here and one message from each
    of PUBLISHERS websockets; every websocket then closes with 1000."""
    base = f"ws://127.0.0.1:{port}/ws/news"
    publisher = RedisPublisher(
        facility="news", broadcast=True, settings=Settings(connection=redis_url)
    )
    with contextlib.ExitStack() as stack:
        readers = [
            stack.enter_context(connect(base + "?subscribe-broadcast", open_timeout=10))
            for _ in range(SUBSCRIBERS)
        ]
        writers = [
            stack.enter_context(connect(base + "?publish-broadcast", open_timeout=10))
            for _ in range(PUBLISHERS)
        ]
        for i in range(MESSAGES):
            publisher.publish_message(f"m{i}", expire=0)
        for i, ws in enumerate(writers):
            ws.send(f"w{i}")
        for ws in readers:
            assert len([ws.recv(timeout=10) for _ in range(MESSAGES + PUBLISHERS)]) == 10
