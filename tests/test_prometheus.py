"""A real Prometheus server scrapes gunicorn with 2 workers (multiprocess mode); the figures
read back through Prometheus' HTTP API match the traffic the test sent."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for
from redis_server import free_port
from test_gunicorn import start_gunicorn
from test_operations_docs import operations_sample
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
rule_files: [alerts.yml]
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
        (tmp_path / "alerts.yml").write_text(operations_sample("alerts"))  # the documented rules
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


def documented_gunicorn(tmp_path: Path) -> tuple[str, list[str]]:
    """docs/operations.rst's command: its multiprocess variable, and its gunicorn options
    (config file written from the documented one; 2 workers; the app is the test's)."""
    (tmp_path / "gunicorn.conf.py").write_text(operations_sample("gunicorn-conf"))
    lines = operations_sample("gunicorn-command").replace("\\\n", " ").splitlines()
    command = shlex.split(next(line for line in lines if " gunicorn " in line))
    variable = command[0].split("=", 1)[0]
    options = command[command.index("gunicorn") + 1 : -1]  # without the app
    options[options.index("-c") + 1] = str(tmp_path / "gunicorn.conf.py")
    options[options.index("-w") + 1] = "2"
    return variable, options


def test_prometheus_reads_the_figures_of_both_workers(prometheus, redis_url, tmp_path):
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    variable, options = documented_gunicorn(tmp_path)
    assert variable == "PROMETHEUS_MULTIPROC_DIR"
    os.environ[variable] = str(multiproc)
    try:
        proc, port = start_gunicorn(
            redis_url, *options, options={"metrics": True, "metrics_url": "/metrics"}
        )
    finally:
        del os.environ[variable]
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
        # The documented alert rules load and evaluate (none fires on this traffic).
        rules = rules_of(url)
        assert len(rules) == 7 and all(rule["health"] == "ok" for rule in rules), rules
        assert all(rule["state"] == "inactive" for rule in rules), rules
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def rules_of(url: str) -> list[dict]:
    """The rules Prometheus loaded, once each has been evaluated."""

    def evaluated():
        with urllib.request.urlopen(url + "/api/v1/rules", timeout=10) as response:
            groups = json.loads(response.read())["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(r.get("lastEvaluation", "0001").startswith("20") for r in rules)
        return rules if rules and done else None

    return wait_for(evaluated, timeout=20, interval=0.5)


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
