"""The demo's embedded Redis: without WS4REDIS_CONNECTION or REDIS_URL, ``manage.py runserver``
starts a real redis-server for the run, says so, serves with it and stops it on exit."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from runserver_process import Runserver

DEMO = Path(__file__).resolve().parent.parent / "demo_site"
ANNOUNCEMENT = (
    r"^Embedded Redis: neither WS4REDIS_CONNECTION nor REDIS_URL is set, so the demo started "
    r".*redis-server .* at (redis://127\.0\.0\.1:(\d+)/0), data in (\S+)\."
)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("reload_args", [["--noreload"], []], ids=["noreload", "autoreload"])
def test_embedded_redis_serves_the_demo_and_stops_with_it(tmp_path, reload_args):
    """The server announces the embedded redis-server, publishes and subscribes through it
    (with the autoreloader, the server process gets its URL from the first one), and the
    redis-server and its directory are gone once the server stopped."""
    env = {"DEMO_DATABASE": str(tmp_path / "db.sqlite3")}
    server = Runserver(DEMO, reload_args, env=env)
    server.env.pop("REDIS_URL", None)
    server.start()
    try:
        (line,) = server.wait_for_output(ANNOUNCEMENT)
        url, port, directory = re.search(ANNOUNCEMENT, line).groups()
        server.wait_until_serving()
        assert os.path.isdir(directory)
        with server.connect("/ws/chat?subscribe-broadcast") as ws:
            client = redis.Redis.from_url(url)
            try:
                assert client.publish("demo:broadcast:chat", "via the embedded redis") == 1
            finally:
                client.close()
            assert ws.recv(timeout=5) == "via the embedded redis"
    finally:
        assert server.stop() == 0
    assert len(server.matches(ANNOUNCEMENT)) == 1
    wait_for(lambda: refuses_connections(int(port)), timeout=10)
    assert not os.path.exists(directory)
