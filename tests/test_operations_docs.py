"""docs/operations.rst's Grafana dashboard and alerts name only metrics that are exported."""

from __future__ import annotations

import configparser
import json
import logging
import logging.config
import re
from pathlib import Path

from stacks import documented_sample

from ws4redis_gevent import WebsocketMiddleware, metrics, settings
from ws4redis_gevent.metrics import EXPORTED
from ws4redis_gevent.settings import Settings
from ws4redis_gevent.status import FacilityKeys, Status, format_status

DOCS = Path(__file__).resolve().parent.parent / "docs"
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Metric names; not the package (ws4redis_gevent) nor the command (ws4redis_status).
METRIC = re.compile(r"\bws4redis_(?!gevent\b|status\b)[a-z_]+")


def exported_series() -> set[str]:
    return {name + suffix for name, kind in EXPORTED.items() for suffix in SUFFIXES[kind]}


def exprs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in exprs(value)]
    return []


def test_dashboard_is_valid_json_naming_only_exported_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = exprs(dashboard)
    assert len(queries) >= 10 and dashboard["panels"]
    named = {m for q in queries for m in METRIC.findall(q)}
    assert named, queries
    assert named <= exported_series(), named - exported_series()
    # Every exported metric has a panel.
    assert {n for n in EXPORTED if not any(s.startswith(n) for s in named)} == set()


def test_operations_doc_names_only_exported_metrics():
    text = (DOCS / "operations.rst").read_text()
    named = set(METRIC.findall(text))
    known = exported_series() | set(EXPORTED)  # a histogram is named by its own name too
    assert named <= known, named - known
    assert set(EXPORTED) <= named


# -- the samples of docs/operations.rst (marked ``.. tested-operations: NAME``) ---------------


def operations_sample(name: str) -> str:
    """The code block of docs/operations.rst marked ``.. tested-operations: NAME``."""
    return documented_sample("tested-operations", name, DOCS / "operations.rst")


def settings_of(sample: str) -> dict:
    """The options a Django settings sample sets (WS4REDIS_X = ... -> x)."""
    namespace: dict = {}
    exec(sample, namespace)
    return {k.removeprefix("WS4REDIS_").lower(): v for k, v in namespace.items() if k.isupper()}


def test_install_sample_names_the_extra_that_brings_prometheus_client():
    assert operations_sample("install").strip() == "pip install 'ws4redis-gevent[metrics]'"
    config = configparser.ConfigParser()
    config.read(DOCS.parent / "setup.cfg")
    assert config["options.extras_require"]["metrics"].split() == ["prometheus_client>=0.20"]


def test_metrics_settings_sample_serves_metrics():
    """The settings of the sample, given to the middleware, serve the exposition at its URL."""
    options = settings_of(operations_sample("metrics-settings"))
    assert options == {"metrics": True, "metrics_url": "/ws4redis/metrics"}
    metrics.reset()
    try:
        app = WebsocketMiddleware(lambda environ, start_response: [b"app"], **options)
        answer: list = []
        body = b"".join(
            app({"PATH_INFO": options["metrics_url"]}, lambda s, h: answer.extend([s, h]))
        )
        assert answer[0] == "200 OK"
        assert b"# TYPE ws4redis_messages_sent_total counter" in body
    finally:
        metrics.reset()
        settings.reset()


def test_health_settings_sample_is_valid():
    options = settings_of(operations_sample("health-settings"))
    assert Settings().replace(**options).health_url == "/ws4redis/health"


def test_status_sample_is_what_the_command_prints():
    sample = operations_sample("status-output")
    shown = format_status(
        Status(
            ok=True,
            ping_ms=0.21,
            redis_version="7.0.15",
            channels={"broadcast:news": 4, "user:john:news": 1},
            facilities={"news": FacilityKeys(2, 0), "feed": FacilityKeys(1, 1)},
        )
    )
    assert shown == sample


def test_logging_sample_configures_the_websocket_lines():
    loggers = [logging.getLogger(n) for n in ("ws4redis_gevent", "ws4redis_gevent.websockets")]
    saved = [(lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    namespace: dict = {}
    exec(operations_sample("logging"), namespace)
    try:
        logging.config.dictConfig(namespace["LOGGING"])
        assert loggers[1].isEnabledFor(logging.INFO)
    finally:
        for logger, (level, handlers, propagate) in zip(loggers, saved, strict=True):
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
