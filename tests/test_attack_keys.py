"""Attack review: ``keys.is_internal`` judged by the suffix alone, so the channel of a facility
(or user, group) named ``@published``, ``@history`` or ``@epoch`` passed for an internal key
(anything that skips or cleans internal keys with it would treat a client's channel as ours)."""

from __future__ import annotations

import pytest

from ws4redis_gevent.keys import (
    AUDIENCES,
    channel_name,
    epoch_key,
    history_key,
    is_internal,
    stamp_key,
)

SUFFIX_NAMES = ["@published", "@history", "@epoch"]


@pytest.mark.parametrize("prefix", [None, "app", "a:b"])
@pytest.mark.parametrize("audience", AUDIENCES)
@pytest.mark.parametrize("facility", SUFFIX_NAMES)
def test_channels_named_like_a_suffix_are_not_internal(prefix, audience, facility):
    name = None if audience == "broadcast" else "@history"
    channel = channel_name(prefix, audience, facility, name)
    assert not is_internal(channel)
    for key in (stamp_key(channel), history_key(channel), epoch_key(channel)):
        assert is_internal(key)
