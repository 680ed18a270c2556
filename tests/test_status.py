"""ws4redis-status / manage.py ws4redis_status: live status read from a real Redis."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for
from redis_server import RedisServer

from ws4redis_gevent import status
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

TOKEN_AUTH = "ws_callbacks.token_auth"  # ?token=t-john: the user john


def run_status(capsys, *args: str) -> tuple[int, str]:
    code = status.main(list(args))
    return code, capsys.readouterr().out


def test_channels_across_processes_and_keys_per_facility(start_server, redis_url, capsys):
    """Two worker processes subscribed to broadcast:news count 2; stored messages and history
    streams are counted per facility; the health of the connection is shown."""
    servers = [start_server(process_request=TOKEN_AUTH) for _ in range(2)]
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(server.connect("/ws/news?subscribe-broadcast"))
        stack.enter_context(servers[0].connect("/ws/news?subscribe-user&token=t-john"))
        for server in servers:
            wait_for(lambda s=server: s.stats()["channels"].get("broadcast:news"))
        RedisPublisher(
            facility="news", broadcast=True, settings=Settings(connection=redis_url)
        ).publish_message("kept", expire=60)
        RedisPublisher(
            facility="feed",
            broadcast=True,
            settings=Settings(connection=redis_url, history={"feed": {"size": 10, "ttl": 60}}),
        ).publish_message("in history", expire=60)

        code, out = run_status(capsys, "--connection", redis_url, "--json")
        assert code == 0
        found = json.loads(out)
        assert found["ok"] and found["ping_ms"] >= 0 and found["redis_version"]
        assert found["channels"] == {"broadcast:news": 2, "user:john:news": 1}
        assert found["facilities"]["news"] == {"stored": 1, "history": 0}
        assert found["facilities"]["feed"] == {"stored": 1, "history": 1}

        code, text = run_status(capsys, "--connection", redis_url)
        assert code == 0
        assert text.startswith("Redis: ok (PING ")
        assert "       2  broadcast:news" in text
        assert "       1 / 1       feed" in text


def test_unreachable_redis_exits_1(capsys):
    redis = RedisServer().start()
    url = redis.url
    redis.stop()
    code, out = run_status(capsys, "--connection", url)
    assert code == 1
    assert out.startswith("Redis: UNREACHABLE (ConnectionError")


def test_console_script_is_installed(redis_url):
    script = Path(sys.executable).with_name("ws4redis-status")
    result = subprocess.run(
        [script, "--connection", redis_url, "--json"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_django_command(ws4redis_settings, redis_url):
    from io import StringIO

    from django.core.management import call_command
    from django.test import override_settings

    out = StringIO()
    RedisPublisher(
        facility="news", broadcast=True, settings=Settings(connection=redis_url, prefix="site")
    ).publish_message("kept", expire=60)
    with override_settings(WS4REDIS_CONNECTION=redis_url, WS4REDIS_PREFIX="site"):
        call_command("ws4redis_status", "--json", stdout=out)
    found = json.loads(out.getvalue())
    assert found["ok"] and found["facilities"] == {"news": {"stored": 1, "history": 0}}


def test_cluster_counts_shard_subscriptions(start_server, redis_cluster, capsys):
    redis_cluster.flush()
    server = start_server(connection=redis_cluster.url())
    facilities = [f"room{n}" for n in range(6)]
    with contextlib.ExitStack() as stack:
        for facility in facilities:
            stack.enter_context(server.connect(f"/ws/{facility}?subscribe-broadcast"))
        code, out = run_status(capsys, "--connection", redis_cluster.url(), "--json")
    assert code == 0, out
    assert json.loads(out)["channels"] == {f"broadcast:{f}": 1 for f in facilities}
