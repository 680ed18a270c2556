"""Prometheus metrics (WS4REDIS_METRICS): the only module that imports ``prometheus_client``.

The serving code counts in plain integers (``stats.py``); a greenlet per process copies those
figures into ``prometheus_client`` metrics every SYNC_INTERVAL seconds, so the fan-out path
never calls into ``prometheus_client`` per message. Only the hub lag histogram is observed
directly, once per burst of messages.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn, uWSGI), ``prometheus_client`` keeps each
worker's figures in files there, and ``metrics_app`` serves the sum over every worker from
whichever worker the scrape reaches.

Metrics never stop websockets from being served: if ``prometheus_client`` is missing, the
directory is not writable or the registry fails, metrics are turned off for the process and the
failure is logged once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import gevent

from . import stats

logger = logging.getLogger("ws4redis_gevent.metrics")

SYNC_INTERVAL = 1.0
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Every metric exported, by the name Prometheus shows (counters with their ``_total``).
EXPORTED = {
    "ws4redis_websockets_open": "gauge",
    "ws4redis_handshakes_total": "counter",
    "ws4redis_messages_sent_total": "counter",
    "ws4redis_sent_bytes_total": "counter",
    "ws4redis_messages_received_total": "counter",
    "ws4redis_received_bytes_total": "counter",
    "ws4redis_publishes_total": "counter",
    "ws4redis_dropped_messages_total": "counter",
    "ws4redis_closes_sent_total": "counter",
    "ws4redis_closes_received_total": "counter",
    "ws4redis_redis_reconnects_total": "counter",
    "ws4redis_redis_disconnected_seconds_total": "counter",
    "ws4redis_hub_lag_seconds": "histogram",
    "ws4redis_outbox_messages": "gauge",
    "ws4redis_outbox_max_messages": "gauge",
}


class Exporter:
    """The process's ``prometheus_client`` metrics, fed from ``stats.STATS``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
            return Counter(name, doc, list(labels), registry=r)

        self.open = Gauge(
            "ws4redis_websockets_open",
            "Websockets open, by backend",
            ["backend"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.handshakes = counter(
            "ws4redis_handshakes", "Websocket handshakes, by HTTP status", ["status"]
        )
        self.sent = counter("ws4redis_messages_sent", "Messages written to websockets")
        self.sent_bytes = counter("ws4redis_sent_bytes", "Bytes of messages written")
        self.received = counter("ws4redis_messages_received", "Messages received from clients")
        self.received_bytes = counter("ws4redis_received_bytes", "Bytes received from clients")
        self.publishes = counter("ws4redis_publishes", "Messages published to Redis")
        self.dropped = counter(
            "ws4redis_dropped_messages", "Messages dropped, by reason", ["reason"]
        )
        self.closes_sent = counter("ws4redis_closes_sent", "Close frames sent, by code", ["code"])
        self.closes_received = counter(
            "ws4redis_closes_received", "Close frames received, by code", ["code"]
        )
        self.reconnects = counter("ws4redis_redis_reconnects", "Redis pub/sub connections lost")
        self.disconnected = counter(
            "ws4redis_redis_disconnected_seconds", "Time the hub spent without Redis"
        )
        self.lag = Histogram(
            "ws4redis_hub_lag_seconds",
            "From a burst's first message arriving from Redis to the hub's last write of it",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.outbox = Gauge(
            "ws4redis_outbox_messages",
            "Messages waiting in outboxes",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.outbox_max = Gauge(
            "ws4redis_outbox_max_messages",
            "Messages waiting in the fullest outbox",
            registry=r,
            multiprocess_mode="livemax",
        )
        for reason in stats.DROP_REASONS:  # shown at 0 before the first drop
            self.dropped.labels(reason)
        self._synced: dict[tuple[str, Any], float] = {}

    def sync(self) -> None:
        """Copy this process's figures into the metrics (counters by their increase)."""
        from .relay import live_relays

        s = stats.STATS
        relays = live_relays()
        sent = s.sent + sum(r.outbox.sent for r in relays)
        sent_bytes = s.sent_bytes + sum(r.outbox.sent_bytes for r in relays)
        received = s.received + sum(r.received for r in relays)
        received_bytes = s.received_bytes + sum(r.received_bytes for r in relays)
        self._add(self.sent, "sent", sent)
        self._add(self.sent_bytes, "sent_bytes", sent_bytes)
        self._add(self.received, "received", received)
        self._add(self.received_bytes, "received_bytes", received_bytes)
        self._add(self.publishes, "publishes", s.publishes)
        self._add(self.reconnects, "reconnects", s.reconnects)
        self._add(self.disconnected, "disconnected", s.disconnected_for())
        self._add_labelled(self.handshakes, "handshakes", s.handshakes)
        self._add_labelled(self.dropped, "dropped", s.dropped)
        self._add_labelled(self.closes_sent, "closes_sent", s.closes_sent)
        self._add_labelled(self.closes_received, "closes_received", s.closes_received)
        for backend, count in s.open_by_backend.items():
            self.open.labels(backend).set(count)
        depths = [len(r.outbox) for r in relays]
        self.outbox.set(sum(depths))
        self.outbox_max.set(max(depths, default=0))

    def _add(self, metric: Any, key: Any, total: float) -> None:
        increase = total - self._synced.get(("", key), 0)
        if increase > 0:
            metric.inc(increase)
            self._synced[("", key)] = total

    def _add_labelled(self, metric: Any, name: str, totals: dict[Any, int]) -> None:
        for label, total in list(totals.items()):
            increase = total - self._synced.get((name, label), 0)
            if increase > 0:
                metric.labels(str(label)).inc(increase)
                self._synced[(name, label)] = total


_exporter: Exporter | None = None
_failed = False
_syncing_pid: int | None = None


def enable() -> bool:
    """Turn metrics on for this process; False (logged once) when they cannot be."""
    global _exporter
    if _failed:
        return False
    if _exporter is None:
        try:
            _exporter = Exporter()
        except Exception as exc:
            _fail(exc)
            return False
        stats.observe_hub_lag = _observe_lag
    return True


def enabled() -> bool:
    """Whether metrics are on (and have not failed) in this process."""
    return _exporter is not None


def start() -> None:
    """Start this process's sync greenlet, once per process (workers fork after the
    middleware is built). Cheap to call on every websocket."""
    global _syncing_pid
    pid = os.getpid()
    if _exporter is not None and _syncing_pid != pid:
        _syncing_pid = pid
        gevent.spawn(_sync_forever)


def sync_now() -> None:
    """Copy the figures into the metrics now; a failure turns metrics off (logged once)."""
    exporter = _exporter
    if exporter is None:
        return
    try:
        exporter.sync()
    except Exception as exc:
        _fail(exc)


def _sync_forever() -> None:
    while _exporter is not None:
        gevent.sleep(SYNC_INTERVAL)
        sync_now()


def _observe_lag(seconds: float) -> None:
    exporter = _exporter
    if exporter is None:
        return
    try:
        exporter.lag.observe(seconds)
    except Exception as exc:
        _fail(exc)


def _fail(exc: BaseException) -> None:
    global _exporter, _failed
    _exporter = None
    stats.observe_hub_lag = stats.no_lag
    if not _failed:
        _failed = True
        logger.error(
            "Prometheus metrics are off in this process (websockets are served as usual): %s: %s",
            type(exc).__name__,
            exc,
        )


def reset() -> None:
    """Forget the exporter and any failure (tests)."""
    global _exporter, _failed, _syncing_pid
    _exporter = None
    _failed = False
    _syncing_pid = None
    stats.observe_hub_lag = stats.no_lag


def exposition() -> tuple[bytes, str]:
    """The metrics of every worker (multiprocess mode) or of this process, in the text format,
    and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if _exporter is None:
        raise RuntimeError("metrics are off")
    sync_now()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = _exporter.registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app serving ``exposition()``; 503 while metrics are off or failing."""
    try:
        body, content_type = exposition()
        status = "200 OK"
    except Exception as exc:
        if _exporter is not None:
            _fail(exc)
        body, content_type = b"metrics unavailable\n", "text/plain; charset=utf-8"
        status = "503 Service Unavailable"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: drop an ended worker's live gauges (multiprocess mode).

    In gunicorn's config file: ``from ws4redis_gevent.metrics import child_exit``.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)
        except Exception as exc:
            logger.warning("cannot mark worker %s dead for the metrics: %s", worker.pid, exc)
