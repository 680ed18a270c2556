"""hubs.py: one hub per process and connection settings, rebuilt after a fork, hooks told of a
lost connection with the hub that lost it (against a real redis-server)."""

from __future__ import annotations

import pytest

from ws4redis_gevent import hubs
from ws4redis_gevent.hub import Hub


@pytest.fixture(autouse=True)
def fresh_registry():
    hubs.close_hubs()
    yield
    hubs.close_hubs()


def test_one_hub_per_connection_setting(redis_url) -> None:
    first = hubs.get_hub(redis_url)
    assert hubs.get_hub(redis_url) is first
    assert isinstance(first, Hub)
    assert hubs.hubs() == [first]


def test_each_write_window_has_its_own_hub(redis_url) -> None:
    """A hub gathers for one window (WS4REDIS_WRITE_WINDOW): another window, another hub."""
    plain, windowed = hubs.get_hub(redis_url), hubs.get_hub(redis_url, 0.005)
    assert windowed is not plain
    assert hubs.get_hub(redis_url, 0.005) is windowed
    assert (plain._write_window, windowed._write_window) == (0.0, 0.005)  # type: ignore[union-attr]


def test_a_new_hub_after_a_fork(redis_url, monkeypatch) -> None:
    first = hubs.get_hub(redis_url)
    monkeypatch.setattr(hubs.os, "getpid", lambda: -1)
    assert hubs.get_hub(redis_url) is not first


def test_hooks_are_registered_once_and_receive_the_hub(redis_url) -> None:
    seen: list[Hub] = []
    hubs.on_connection_lost(seen.append)
    hubs.on_connection_lost(seen.append)
    hub = hubs.get_hub(redis_url)
    for callback in hub._connection_lost:  # what the hub's reader calls on a lost connection
        callback(hub)
    assert seen == [hub]
    hubs._connection_lost_hooks.remove(seen.append)
