"""A mass reconnect is no event storm: 1,000 websockets of a worker go away and come back, a
watcher on another worker receives their 2,000 joins and leaves in a few coalesced messages.

The 1,000 connections come from bench/wsclient.c (one process, epoll), as in the benchmarks.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import wait_for

from bench.loadclient import LoadClient, build_client
from bench.measure import raise_nofile
from ws4redis_gevent.presence import get_presence
from ws4redis_gevent.settings import Settings

CLIENTS = 1000
INTERVAL = 0.5
PRESENCE = {"room": {"ttl": 30, "events_interval": INTERVAL}}


def present_count(redis_url: str) -> int:
    settings = Settings(connection=redis_url, presence=PRESENCE)
    return sum(p.connections for p in get_presence("room", settings=settings))


def read_events(ws, until, timeout: float = 60.0) -> list[dict]:
    """Presence events until ``until(events)`` holds."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        head, _, body = frame.partition("\n")
        assert head == "!presence broadcast", frame
        events.append(json.loads(body))
    return events


def stop(client: LoadClient) -> None:
    client.stop()
    for pipe in (client.proc.stdin, client.proc.stdout):  # stop() leaves them to the GC
        if pipe is not None:
            pipe.close()


def names(events: list[dict], kind: str) -> set[str]:
    return {user["name"] for event in events for user in event.get(kind, [])}


def test_a_thousand_reconnections_are_a_few_event_messages(start_server, redis_url):
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler for bench/wsclient.c")
    raise_nofile()  # inherited by the servers and the load client
    binary = build_client()
    quiet = {"WS4REDIS_TEST_LOG_LEVEL": "WARNING"}  # stderr is read at the end only
    crowd = start_server(presence=PRESENCE, env=quiet)
    other = start_server(presence=PRESENCE, env=quiet)
    path = "/ws/room?subscribe-broadcast"
    with other.connect(path + "&presence") as watcher:
        me = {json.loads(watcher.recv(timeout=5).partition("\n")[2])["users"][0]["name"]}
        started = time.monotonic()
        first = LoadClient(binary, "ws", crowd.port, CLIENTS, ["--path", path])
        try:
            assert first.ready()["connected"] == CLIENTS
            wait_for(lambda: present_count(redis_url) == CLIENTS + 1, timeout=60)
            joined = read_events(watcher, lambda e: len(names(e, "joined") - me) == CLIENTS)
        finally:
            # The crowd's worker "restarts": every connection drops and comes back.
            stop(first)
        second = LoadClient(binary, "ws", crowd.port, CLIENTS, ["--path", path])
        try:
            assert second.ready()["connected"] == CLIENTS
            wait_for(lambda: present_count(redis_url) == CLIENTS + 1, timeout=60)
            again = read_events(
                watcher,
                lambda e: len(names(e, "left")) == CLIENTS and len(names(e, "joined")) == CLIENTS,
            )
        finally:
            stop(second)
        elapsed = time.monotonic() - started
    changes = 3 * CLIENTS  # 1,000 joins, then 1,000 leaves and 1,000 joins
    messages = len(joined) + len(again)
    # At most one message per interval and process (a few more at the edges), never one per
    # change: anonymous connections are one user each, so each is a join and a leave.
    assert messages <= 2 * (elapsed / INTERVAL + 2), (messages, elapsed)
    assert messages * 20 < changes, messages
    print(f"{changes} changes in {messages} messages over {elapsed:.1f} s")
