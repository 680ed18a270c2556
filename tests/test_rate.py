"""rate.py: the token bucket behind the publish and ping rates (pure units)."""

from __future__ import annotations

from ws4redis_gevent import rate
from ws4redis_gevent.rate import TokenBucket


def test_a_full_bucket_gives_its_burst_then_refuses(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(rate.time, "monotonic", lambda: now[0])
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back at 2 a second
    assert [bucket.take(), bucket.take()] == [True, False]


def test_a_bucket_never_saves_more_than_its_burst(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(rate.time, "monotonic", lambda: now[0])
    bucket = TokenBucket(rate=10.0, burst=2)
    now[0] += 3600.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]
