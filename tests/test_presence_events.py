"""presence.py's tracker against a real redis-server, in this process: the coalescing of join
and leave events (a mass reconnect is no event storm), versions, and the settings."""

from __future__ import annotations

import json

import pytest
import redis
from channel_monitor import ChannelMonitor

from ws4redis_gevent.envelope import PRESENCE, open_presence
from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.presence import PresenceConfig, PresenceTracker, presence_config
from ws4redis_gevent.settings import Settings

CHANNEL = "broadcast:chat"
LONG = PresenceConfig(ttl=60, events_interval=3600)  # published by hand below


def member(i: int, generation: int = 0) -> str:
    return f"{generation:08x}{i:08x} u:user{i}"


def events(monitor: ChannelMonitor) -> list[dict]:
    found = []
    while True:
        try:
            _, data = monitor.next(timeout=0.5)
        except AssertionError:
            return found
        assert data.startswith(PRESENCE)
        found.append(json.loads(open_presence(data)))


@pytest.fixture
def tracker(redis_url):
    made = PresenceTracker(redis.Redis.from_url(redis_url), None)
    made._scheduled = True  # no Keepalive here: the test drives it
    yield made
    for greenlet in (made._publisher, made._maintainer):
        if greenlet is not None:
            greenlet.kill()


def publish_now(tracker: PresenceTracker) -> None:
    if tracker._publisher is not None:
        tracker._publisher.kill()
        tracker._publisher = None
    tracker._publish()


def test_a_mass_reconnect_is_one_event_per_channel_and_interval(tracker, redis_url):
    """1,000 websockets join: one message naming 1,000 users. The worker restarts: 1,000
    leave and 1,000 connect again within the interval: one message, each user named once,
    with their latest change (joined)."""
    with ChannelMonitor(redis_url, CHANNEL + ":@presence") as monitor:
        for i in range(1000):
            tracker.enter([CHANNEL], member(i), LONG, snapshot=False)
        publish_now(tracker)
        [first] = events(monitor)
        assert len(first["joined"]) == 1000 and first["left"] == []
        for i in range(1000):
            tracker._local[CHANNEL].members.discard(member(i))
            tracker._run(CHANNEL, LONG, remove=[member(i)])
        for i in range(1000):
            tracker.enter([CHANNEL], member(i, 1), LONG, snapshot=False)
        publish_now(tracker)
        [second] = events(monitor)
        assert len(second["joined"]) == 1000 and second["left"] == []
        assert min(u["v"] for u in second["joined"]) > max(u["v"] for u in first["joined"])
    assert tracker.published == 2


def test_a_second_tab_is_an_update_and_the_last_tab_out_a_leave(tracker, redis_url):
    """Join and leave are per user: a second tab, and closing it, only update the count."""
    with ChannelMonitor(redis_url, CHANNEL + ":@presence") as monitor:
        lists = tracker.enter([CHANNEL], "0000000000000001 u:john", LONG, snapshot=True)
        assert json.loads(lists[CHANNEL])["users"][0]["connections"] == 1
        publish_now(tracker)
        [joined] = events(monitor)
        assert [(u["name"], u["connections"]) for u in joined["joined"]] == [("john", 1)]
        tracker.enter([CHANNEL], "0000000000000002 u:john", LONG, snapshot=False)
        publish_now(tracker)
        [second] = events(monitor)
        assert (second["joined"], second["left"]) == ([], [])
        assert [(u["name"], u["connections"]) for u in second["updated"]] == [("john", 2)]
        tracker._run(CHANNEL, LONG, remove=["0000000000000001 u:john"])
        publish_now(tracker)
        assert [u["connections"] for u in events(monitor)[0]["updated"]] == [1]
        tracker._run(CHANNEL, LONG, remove=["0000000000000002 u:john"])
        publish_now(tracker)
        [left] = events(monitor)
        assert [u["name"] for u in left["left"]] == ["john"]


def test_a_join_and_more_tabs_within_one_interval_stay_a_join(tracker, redis_url):
    with ChannelMonitor(redis_url, CHANNEL + ":@presence") as monitor:
        tracker.enter([CHANNEL], "0000000000000001 u:ann", LONG, snapshot=False)
        tracker.enter([CHANNEL], "0000000000000002 u:ann", LONG, snapshot=False)
        publish_now(tracker)
        [event] = events(monitor)
        assert [(u["name"], u["connections"]) for u in event["joined"]] == [("ann", 2)]
        assert event["updated"] == []


def test_a_refresh_after_redis_lost_everything_makes_the_process_present_again(tracker, redis_url):
    """Presence heals itself: the refresh re-adds what a Redis restart (FLUSHALL here) lost."""
    tracker.enter([CHANNEL], member(1), LONG, snapshot=False)
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    tracker._refresh([CHANNEL])
    assert client.hget("@{broadcast:chat}:users", "u:user1") == b"1"


@pytest.mark.parametrize(
    "setting",
    [{"chat": {"ttl": 0}}, {"chat": {"tll": 3}}, ["chat"], {"chat": 30}, {"chat": {"ttl": "3"}}],
)
def test_bad_presence_settings_are_refused(setting) -> None:
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_PRESENCE"):
        Settings(presence=setting)


def test_presence_config_per_facility() -> None:
    assert presence_config("*", "any") == PresenceConfig()
    assert presence_config({"chat": {"ttl": 9}}, "chat") == PresenceConfig(ttl=9)
    assert presence_config({"chat": {"ttl": 9}}, "news") is None
    assert presence_config({"*": {}}, "news") == PresenceConfig()
    assert presence_config(None, "chat") is None
    assert PresenceConfig().ttl <= 60  # the default bounds ghosts to a minute at most


def test_presence_envelopes_count_only_on_events_channels() -> None:
    """A presence envelope published (by a trusted publisher, raw) on a message channel is
    malformed there: websockets that did not ask for presence never get a presence frame."""
    from ws4redis_gevent.envelope import MalformedEnvelope
    from ws4redis_gevent.hub import _unwrap
    from ws4redis_gevent.outgoing import PresenceFrame

    envelope = PRESENCE + b'{"joined": []}'
    with pytest.raises(MalformedEnvelope):
        _unwrap(envelope, b"broadcast:chat")
    frame = _unwrap(envelope, b"broadcast:chat:@presence")
    assert isinstance(frame, PresenceFrame)
    assert frame.tagged_frame(b"broadcast")[2:] == b'!presence broadcast\n{"joined": []}'
    with pytest.raises(MalformedEnvelope):
        _unwrap(PRESENCE + b"not json", b"broadcast:chat:@presence")


def test_a_refresh_never_adds_back_a_connection_that_left(tracker, redis_url):
    """The refresh sends only the connections still open (checked chunk by chunk), and the
    one greenlet that sends refreshes also sends removals, in order."""
    client = redis.Redis.from_url(redis_url)
    key = "@{broadcast:chat}:connections"
    tracker.enter([CHANNEL], member(1), LONG, snapshot=False)
    tracker.enter([CHANNEL], member(2), LONG, snapshot=False)
    before = client.zscore(key, member(1))
    tracker.leave([CHANNEL], member(1))  # its removal is queued
    tracker._maintainer.kill()
    tracker._maintainer = None
    client.zadd(key, {member(2): 0}, xx=True)  # long expired: the refresh must renew it
    tracker._refresh([CHANNEL])
    assert client.zscore(key, member(1)) == before  # not refreshed...
    assert client.zscore(key, member(2)) > before  # ...but member 2 was
    tracker._maintain()
    assert client.zscore(key, member(1)) is None
    assert client.hget("@{broadcast:chat}:users", "u:user1") is None
