"""Presence (WS4REDIS_PRESENCE): who is on a channel, join/leave events, no ghosts after a crash.

Real server processes, a real redis-server, real websocket clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

import pytest
import redis
from conftest import wait_for
from websockets.exceptions import InvalidStatus

from ws4redis_gevent.presence import Present, get_presence
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

TOKEN_AUTH = "ws_callbacks.token_auth"
FAST = {"foobar": {"ttl": 2, "events_interval": 0.05}}
SUB = "/ws/foobar?subscribe-broadcast"
WATCH = SUB + "&presence"


def settings(redis_url: str, presence: Any = None) -> Settings:
    return Settings(connection=redis_url, presence=presence or FAST)


def who(redis_url: str, presence: Any = None) -> list[tuple[str, bool, int]]:
    found = get_presence("foobar", settings=settings(redis_url, presence))
    return [(p.name, p.anonymous, p.connections) for p in found]


def presence_frame(ws, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
    """The next frame, which must be a presence frame: (label, event)."""
    frame = ws.recv(timeout=timeout)
    assert isinstance(frame, str) and frame.startswith("!presence "), frame
    head, _, body = frame.partition("\n")
    return head[len("!presence ") :], json.loads(body)


def publish(redis_url: str, message: str) -> None:
    publisher = RedisPublisher(facility="foobar", broadcast=True, settings=settings(redis_url))
    publisher.publish_message(message)


def names(users: list[dict[str, Any]]) -> set[str]:
    return {user["name"] for user in users}


def next_event_with(ws, kind: str, name: str) -> dict[str, Any]:
    """Read presence events until one lists ``name`` under ``kind`` (joined or left)."""
    while True:
        label, event = presence_frame(ws, timeout=10)
        if name in names(event.get(kind, [])):
            return event


def test_tabs_of_one_user_count_once_and_a_clean_close_removes_at_once(start_server, redis_url):
    """Two tabs of john, one of mary: two users, john with 2 connections; closing one tab
    leaves john with 1, closing the last removes him, before any expiry."""
    server = start_server(process_request=TOKEN_AUTH, presence={"foobar": {"ttl": 60}})
    presence = {"foobar": {"ttl": 60}}
    with server.connect(SUB + "&token=t-john") as tab1, server.connect(SUB + "&token=t-mary"):
        with server.connect(SUB + "&token=t-john"):
            assert who(redis_url, presence) == [("john", False, 2), ("mary", False, 1)]
            found = get_presence("foobar", settings=settings(redis_url, presence))
            assert len(found[0].connection_ids) == 2
        wait_for(lambda: who(redis_url, presence) == [("john", False, 1), ("mary", False, 1)])
        tab1.close()
        wait_for(lambda: who(redis_url, presence) == [("mary", False, 1)])
    wait_for(lambda: who(redis_url, presence) == [])
    with redis.Redis.from_url(redis_url) as client:
        wait_for(lambda: client.hgetall("@{broadcast:foobar}:users").keys() <= {b"@v"})


def test_anonymous_visitors_are_present_by_a_digest_of_their_session(start_server, redis_url):
    """Without a user, a connection is anonymous: never its session key, a digest of it."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    with server.connect(SUB):
        [(name, anonymous, connections)] = who(redis_url)
        assert anonymous and connections == 1 and len(name) == 12


def test_a_watcher_gets_the_list_then_join_and_leave_events(start_server, redis_url):
    """``?presence``: the list first (``!presence LABEL\\nJSON``), then coalesced events;
    messages come tagged as in recovery mode."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    with server.connect(SUB + "&token=t-mary"), server.connect(WATCH + "&token=t-john") as ws:
        label, first = presence_frame(ws)
        assert label == "broadcast"
        assert first["users"] == [
            {"name": "john", "anonymous": False, "connections": 1},
            {"name": "mary", "anonymous": False, "connections": 1},
        ]
        with server.connect(SUB + "&token=t-alice"):
            joined = next_event_with(ws, "joined", "alice")
            [alice] = [user for user in joined["joined"] if user["name"] == "alice"]
            assert alice["v"] > first["v"]  # newer than the list: clients apply it
        next_event_with(ws, "left", "alice")
        RedisPublisher(
            facility="foobar", broadcast=True, settings=settings(redis_url)
        ).publish_message("hello")
        assert ws.recv(timeout=5) == "broadcast -\nhello"


def test_clients_that_did_not_ask_never_see_presence(start_server, redis_url):
    """A plain subscriber gets the messages, bare, and nothing of others joining or leaving."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    with server.connect(SUB + "&token=t-mary") as plain:
        with server.connect(WATCH + "&token=t-john") as watcher:
            presence_frame(watcher)
        wait_for(lambda: who(redis_url) == [("mary", False, 1)])
        RedisPublisher(
            facility="foobar", broadcast=True, settings=settings(redis_url)
        ).publish_message("marker")
        assert plain.recv(timeout=5) == "marker"
        # Only the watcher subscribed to the events channel; released once it left (and the
        # hub's linger ended), while the plain subscriber is still there.
        wait_for(
            lambda: not any(ch.endswith(b":@presence") for ch in pubsub_channels_of(redis_url))
        )
        assert b"broadcast:foobar" in pubsub_channels_of(redis_url)


def pubsub_channels_of(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return client.pubsub_channels()


def test_a_sigkilled_worker_leaves_no_ghost_beyond_the_ttl(start_server, redis_url):
    """Worker A is killed with SIGKILL: its users vanish from queries within ttl (2 s here)
    and watchers on worker B get their leave events (B's refresh removes them)."""
    victim = start_server(process_request=TOKEN_AUTH, presence=FAST)
    survivor = start_server(process_request=TOKEN_AUTH, presence=FAST)
    ghost = victim.connect(SUB + "&token=t-alice", legacy=True)
    try:
        with survivor.connect(WATCH + "&token=t-john") as watcher:
            _, first = presence_frame(watcher)
            assert names(first["users"]) == {"alice", "john"}
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=10)
            wait_for(lambda: who(redis_url) == [("john", False, 1)], timeout=10)
            next_event_with(watcher, "left", "alice")
    finally:
        ghost.close_socket()


def test_presence_is_only_shown_for_channels_the_client_may_subscribe_to(start_server, redis_url):
    """ALLOWED_CHANNELS dropping subscribe-broadcast: no list, no events, not present; a
    refused handshake (403) shows nothing either."""
    server = start_server(
        process_request=TOKEN_AUTH,
        presence=FAST,
        allowed_channels="ws_callbacks.no_broadcast_subscription",
    )
    with server.connect(SUB + "&token=t-mary"):
        pass
    with server.connect(WATCH + "&subscribe-user&token=t-john") as ws:
        label, event = presence_frame(ws)
        assert label == "user"  # only the channel it may subscribe to: its own
        assert event["users"] == [{"name": "john", "anonymous": False, "connections": 1}]
        ws.send("x")  # nothing is published (no publish flag): the next frame shows no leak
        assert who(redis_url) == []
    denied = start_server(
        process_request=TOKEN_AUTH, presence=FAST, allowed_channels="ws_callbacks.deny"
    )
    with pytest.raises(InvalidStatus) as refused, denied.connect(WATCH + "&token=t-john"):
        pass
    assert refused.value.response.status_code == 403


def test_facilities_without_presence_ignore_the_flag(start_server, redis_url):
    """No presence for this facility: ``?presence`` changes nothing, nothing is kept."""
    server = start_server(process_request=TOKEN_AUTH, presence={"other": {}})
    with server.connect(WATCH + "&token=t-john") as ws:
        RedisPublisher(
            facility="foobar", broadcast=True, settings=settings(redis_url)
        ).publish_message("bare")
        assert ws.recv(timeout=5) == "broadcast -\nbare"
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("@*") == []
    with pytest.raises(ValueError):
        get_presence("foobar", settings=Settings(connection=redis_url, presence={"other": {}}))


def test_present_is_a_small_value() -> None:
    assert Present("a", False, 2).as_json() == {"name": "a", "anonymous": False, "connections": 2}


def test_the_process_timer_refreshes_presence_beyond_the_ttl(start_server, redis_url):
    """ttl 2 s: the connection's expiry keeps moving forward (refreshed every ttl / 3 by the
    process's Keepalive), so it is still listed long after its first ttl ran out."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    key = "@{broadcast:foobar}:connections"
    with server.connect(SUB + "&token=t-john"), redis.Redis.from_url(redis_url) as client:
        [(member, first)] = client.zrange(key, 0, -1, withscores=True)
        wait_for(lambda: client.zscore(key, member) > first + 3, timeout=15)
        assert who(redis_url) == [("john", False, 1)]


def test_presence_costs_no_greenlet_per_websocket(start_server, redis_url):
    """Twenty more present websockets (idle) add no greenlet: one timer keeps them all."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    with server.connect(WATCH + "&token=t-john") as first:
        presence_frame(first)
        wait_for(lambda: server.stats()["websockets"] == 1)
        before = server.stats()["greenlets"]
        more = [server.connect(SUB + "&token=t-mary", legacy=True) for _ in range(20)]
        try:
            wait_for(lambda: who(redis_url) == [("john", False, 1), ("mary", False, 20)])
            wait_for(lambda: server.stats()["greenlets"] <= before + 2)
        finally:
            for ws in more:
                ws.close()


def test_presence_keys_of_another_type_never_fail_a_handshake(start_server, redis_url):
    """A user channel's presence key holds a string (not ours): the websocket still opens,
    present on its other channel; that one channel has no presence."""
    server = start_server(process_request=TOKEN_AUTH, presence=FAST)
    with redis.Redis.from_url(redis_url) as client:
        client.set("@{user:john:foobar}:connections", "not a sorted set")
        with server.connect(WATCH + "&subscribe-user&token=t-john") as ws:
            label, event = presence_frame(ws)
            assert (label, names(event["users"])) == ("broadcast", {"john"})
            publish(redis_url, "still served")
            assert ws.recv(timeout=5) == "broadcast -\nstill served"
        assert client.get("@{user:john:foobar}:connections") == b"not a sorted set"


def test_from_django_settings_with_real_sessions(start_django_server, browser, redis_url):
    """Under Django: WS4REDIS_PRESENCE from Django's settings, users from their sessions, and
    get_presence() reading Django's settings; an anonymous visitor with a session is listed
    by a digest of it, never the session key."""
    from django.test import override_settings

    presence = {"foobar": {"ttl": 30}}
    server = start_django_server(settings={"WS4REDIS_PRESENCE": presence})
    john, visitor = browser(server, "john"), browser(server)
    visitor.request("/")  # no session cookie: anonymous, listed by its connection
    with visitor.connect(SUB), john.connect(WATCH) as ws:
        label, event = presence_frame(ws)
        users = event["users"]
        assert (label, users[0]["name"], len(users)) == ("broadcast", "john", 2)
        assert users[1]["anonymous"]
        with override_settings(WS4REDIS_CONNECTION=redis_url, WS4REDIS_PRESENCE=presence):
            found = get_presence("foobar")
        assert [(p.name, p.anonymous) for p in found][0] == ("john", False)
        assert all(john.session_key not in p.name for p in found)


def test_unknown_facilities_and_anonymous_clients_show_nothing_more(start_server, redis_url):
    """WS4REDIS_FACILITIES: an unknown facility is a 404 with ``?presence`` too; an anonymous
    client asking for a user channel has it dropped, and sees the broadcast's presence only."""
    server = start_server(process_request=TOKEN_AUTH, presence="*", facilities=["foobar"])
    with pytest.raises(InvalidStatus) as refused, server.connect("/ws/other?presence"):
        pass
    assert refused.value.response.status_code == 404
    with server.connect(SUB + "&token=t-john"), server.connect(WATCH + "&subscribe-user") as ws:
        label, event = presence_frame(ws)
        assert label == "broadcast" and names(event["users"]) >= {"john"}
        publish(redis_url, "marker")  # the next frame: no other channel's presence came first
        assert ws.recv(timeout=5) == "broadcast -\nmarker"


def test_a_sigkilled_gunicorn_worker_leaves_no_ghost(redis_url):
    """A gunicorn GeventWebSocketWorker killed with SIGKILL: its websocket's presence is gone
    within the ttl (2 s here); the respawned worker serves alice again, counted once."""
    from test_gunicorn import start_gunicorn

    from bench.measure import children

    options = {"presence": FAST, "process_request": TOKEN_AUTH}
    proc, port = start_gunicorn(redis_url, options=options)
    url = f"ws://127.0.0.1:{port}{SUB}&token=t-alice"
    try:
        from websockets.sync.client import connect

        ghost = connect(url, open_timeout=10, legacy=True)
        wait_for(lambda: who(redis_url) == [("alice", False, 1)])
        [worker] = children(proc.pid)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: who(redis_url) == [], timeout=10)
        ghost.close_socket()
        wait_for(lambda: len(children(proc.pid)) == 1, timeout=20)
        with connect(url, open_timeout=20):
            assert who(redis_url) == [("alice", False, 1)]
    finally:
        workers = children(proc.pid) if proc.poll() is None else []
        proc.kill()
        for child in workers:  # the respawned worker would outlive a killed master a while
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        proc.communicate(timeout=10)
