"""Metrics, health endpoint and end-of-websocket log lines, against a real server process."""

from __future__ import annotations

import contextlib
import logging
import re
import urllib.error
import urllib.request

import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer
from test_operations_docs import operations_sample, settings_of
from websockets.exceptions import InvalidStatus

from ws4redis_gevent import metrics, stats
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

TOKEN_AUTH = "ws_callbacks.token_auth"  # ?token=t-john: the user john
# The end-of-websocket line (docs/operations.rst's sample matches it too).
LOG_LINE = re.compile(
    r"WEBSOCKET (?P<path>\S+) closed \((?P<code>\d+|None)\) reason=(?P<reason>'.*') "
    r"after \d+\.\d{3}s in=(?P<msgs_in>\d+)/(?P<bytes_in>\d+)B "
    r"out=(?P<msgs_out>\d+)/(?P<bytes_out>\d+)B user=(?P<user>\S+)$"
)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(figures: dict, name: str, **labels: str) -> float | None:
    return figures.get((name, tuple(sorted(labels.items()))))


def publish(url: str, facility: str, message: str) -> int:
    publisher = RedisPublisher(facility=facility, broadcast=True, settings=Settings(connection=url))
    return publisher.publish_message(message, expire=0)


def test_metrics_report_known_traffic(start_server, redis_url):
    """Handshakes by status, messages and bytes both ways, publishes, closes by code and the
    hub lag come out of the metrics endpoint as sent."""
    server = start_server(metrics=True, metrics_url="/metrics")
    with contextlib.ExitStack() as stack:
        readers = [
            stack.enter_context(server.connect("/ws/news?subscribe-broadcast")) for _ in range(3)
        ]
        writer = stack.enter_context(server.connect("/ws/news?publish-broadcast"))
        exchange(server, redis_url, readers, writer)
    payload_bytes = sum(len(f"m{i}") for i in range(5)) + len("from-client-1from-client-22")

    def settled():
        status, text = get(server.http_url + "/metrics")
        assert status == 200
        figures = samples(text)
        done = value(figures, "ws4redis_closes_received_total", code="1000") == 4
        return (
            figures
            if done and value(figures, "ws4redis_websockets_open", backend="gevent") == 0
            else None
        )

    figures = wait_for(settled)
    assert value(figures, "ws4redis_handshakes_total", status="101") == 4
    assert value(figures, "ws4redis_handshakes_total", status="404") == 1
    assert value(figures, "ws4redis_messages_sent_total") == 21
    # Each frame here has a 2-byte header: 3 readers x (payloads + 7 headers).
    assert value(figures, "ws4redis_sent_bytes_total") == 3 * (payload_bytes + 2 * 7)
    assert value(figures, "ws4redis_messages_received_total") == 2
    assert value(figures, "ws4redis_received_bytes_total") == len("from-client-1from-client-22")
    assert value(figures, "ws4redis_publishes_total") == 2
    assert value(figures, "ws4redis_closes_sent_total", code="1000") == 4
    assert value(figures, "ws4redis_dropped_messages_total", reason="slow_consumer") == 0
    assert value(figures, "ws4redis_hub_lag_seconds_count") >= 1
    assert value(figures, "ws4redis_redis_reconnects_total") == 0
    assert set(metrics.EXPORTED) <= {
        family.name + suffix
        for family in text_string_to_metric_families(get(server.http_url + "/metrics")[1])
        for suffix in ("", "_total")
    }


def exchange(server, redis_url, readers, writer):
    with pytest.raises(InvalidStatus), server.connect("/ws/"):  # no facility: 404
        pass
    for i in range(5):
        assert publish(redis_url, "news", f"m{i}") == 1  # one hub subscription for all
    writer.send("from-client-1")
    writer.send("from-client-22")
    expected = sorted([f"m{i}" for i in range(5)] + ["from-client-1", "from-client-22"])
    for ws in readers:
        assert sorted(ws.recv(timeout=5) for _ in range(7)) == expected


def test_unwritable_metrics_dir_keeps_websockets_working(start_server, redis_url, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR that cannot be written: websockets are served, the metrics
    endpoint answers 503, and the failure is logged once however many websockets come."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    server = start_server(
        metrics=True,
        metrics_url="/metrics",
        env={"PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics")},
    )
    for i in range(3):
        with server.connect("/ws/news?subscribe-broadcast") as ws:
            assert publish(redis_url, "news", f"hello {i}") == 1
            assert ws.recv(timeout=5) == f"hello {i}"
    assert get(server.http_url + "/metrics")[0] == 503
    assert get(server.http_url + "/other")[0] == 200
    err = server.stop()
    assert len(re.findall("Prometheus metrics are off in this process", err)) == 1, err


def test_failing_registry_turns_metrics_off_once(caplog):
    """A registry that raises while the figures are copied: metrics go off, logged once, and
    the hub's lag observation becomes a no-op instead of raising."""
    metrics.reset()
    try:
        assert metrics.enable()
        exporter = metrics._exporter
        assert exporter is not None

        def broken(*args, **kwargs):
            raise OSError("registry on fire")

        stats.STATS.publishes += 1
        exporter.publishes.inc = broken
        exporter.lag.observe = broken
        with caplog.at_level(logging.ERROR, logger="ws4redis_gevent.metrics"):
            stats.hub_lag(0.001)  # fails inside: metrics off
            metrics.sync_now()
            stats.hub_lag(0.001)
        assert not metrics.enabled()
        assert not metrics.enable()  # stays off: no second log line either
        errors = [r for r in caplog.records if r.name == "ws4redis_gevent.metrics"]
        assert len(errors) == 1 and "registry on fire" in errors[0].getMessage()
    finally:
        metrics.reset()
        stats.reset()


def test_health_endpoint_follows_redis(start_server, tmp_path):
    """200 while the worker's hub is connected to Redis, 503 from when Redis stops until it
    is back (and the hub has resubscribed)."""
    redis = RedisServer().start()
    options = settings_of(operations_sample("health-settings"))  # the documented URL
    try:
        server = start_server(connection=redis.url, **options)
        health = server.http_url + options["health_url"]
        assert wait_for(lambda: get(health)[0] == 200)
        assert get(health)[1] == "connected\n"
        redis.stop()
        status, body = wait_for(lambda: (r := get(health))[0] == 503 and r)
        assert "not connected" in body
        redis.start()
        wait_for(lambda: get(health)[0] == 200, timeout=15)
        with server.connect("/ws/news?subscribe-broadcast") as ws:
            assert publish(redis.url, "news", "back") == 1
            assert ws.recv(timeout=5) == "back"
    finally:
        redis.stop()


def test_health_endpoint_off_by_default(server):
    assert get(server.http_url + "/health") == (200, "app saw GET /health")


def test_one_log_line_per_websocket_end(start_server, redis_url):
    """Duration, messages and bytes in and out, close code and reason, and the user; nothing
    per message."""
    server = start_server(process_request=TOKEN_AUTH)
    with server.connect("/ws/news?subscribe-broadcast&publish-broadcast&token=t-john") as ws:
        for i in range(3):
            assert publish(redis_url, "news", f"n{i}") == 1
            assert ws.recv(timeout=5) == f"n{i}"
        ws.send("hi")
        ws.close(1000, "bye now")
    wait_for(lambda: server.stats()["websockets"] == 0)
    err = server.stop()
    lines = [line for line in err.splitlines() if "ws4redis_gevent.websockets" in line]
    assert len(lines) == 1, err
    line = LOG_LINE.search(lines[0])
    assert line, lines[0]
    assert line.groupdict() == {
        "path": "/ws/news",
        "code": "1000",
        "reason": "'bye now'",
        "msgs_in": "1",
        "bytes_in": "2",
        "msgs_out": "3",
        "bytes_out": "12",
        "user": "john",
    }


def test_log_line_sample_is_the_format_logged():
    line = LOG_LINE.search(operations_sample("log-line").strip())
    assert line and line["user"] == "john" and line["code"] == "1000"


def test_log_user_can_be_turned_off(start_server):
    server = start_server(process_request=TOKEN_AUTH, log_user=False)
    with server.connect("/ws/news?subscribe-broadcast&token=t-john"):
        pass
    wait_for(lambda: server.stats()["websockets"] == 0)
    err = server.stop()
    assert re.search(r"WEBSOCKET /ws/news closed \(1000\) .* user=-$", err, re.M), err
    assert "john" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics_url": "/metrics"}, "WS4REDIS_METRICS_URL needs WS4REDIS_METRICS = True"),
        (
            {"metrics": True, "metrics_url": "metrics"},
            "WS4REDIS_METRICS_URL must be None or a path",
        ),
        ({"health_url": "health"}, "WS4REDIS_HEALTH_URL must be None or a path"),
    ],
)
def test_endpoint_settings_are_checked(options, message):
    from ws4redis_gevent.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        Settings(**options)
