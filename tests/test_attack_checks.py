"""Attack review: WS4REDIS_FACILITIES bounds what clients can create in Redis only when it
lists names. A pattern ("room-*", "*") still lets a client invent as many facility names as it
likes (room-1, room-2, ...), each with a stored message and a history stream, but any value of
the setting silenced W010 and W011."""

from __future__ import annotations

import pytest
from test_checks import run_checks  # noqa: F401  (the fixture)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"WS4REDIS_FACILITIES": ["*"]}, "W010"),
        ({"WS4REDIS_FACILITIES": ["chat", "room-*"]}, "W010"),
        (
            {
                "WS4REDIS_FACILITIES": ["room-?"],
                "WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.deny_anonymous",
                "WS4REDIS_HISTORY": {"*": {"size": 10}},
            },
            "W011",
        ),
    ],
)
def test_facility_patterns_do_not_silence_redis_growth_warnings(run_checks, overrides, expected):  # noqa: F811
    assert f"ws4redis_gevent.{expected}" in run_checks(**overrides)


def test_named_facilities_silence_them(run_checks):  # noqa: F811
    found = run_checks(WS4REDIS_FACILITIES=["chat", "news"], WS4REDIS_HISTORY={"*": {"size": 10}})
    assert "ws4redis_gevent.W010" not in found and "ws4redis_gevent.W011" not in found
