"""docs/operations.rst's Grafana dashboard and alerts name only metrics that are exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ws4redis_gevent.metrics import EXPORTED

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
