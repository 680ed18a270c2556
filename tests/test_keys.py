"""keys.py: channel names, quoting, internal keys, facility checks (pure units)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ws4redis_gevent.keys import (
    AUDIENCES,
    InvalidName,
    brace_quote,
    channel_name,
    check_facility,
    epoch_key,
    history_key,
    is_internal,
    presence_events_channel,
    presence_keys,
    quote,
    stamp_key,
    stored_message_key,
    unquote,
)

names = st.text(min_size=1, max_size=12)


def test_names_without_reserved_characters_keep_ws4redis_channel_names() -> None:
    assert channel_name(None, "broadcast", "chat") == "broadcast:chat"
    assert channel_name("app", "user", "chat", "john") == "app:user:john:chat"
    assert channel_name(None, "group", "chat", "admins") == "group:admins:chat"
    assert stored_message_key("broadcast:chat") == "broadcast:chat"


def test_reserved_characters_are_quoted() -> None:
    assert quote("org:1") == "org%3A1"
    assert quote("100%") == "100%25"
    assert quote("%3A") == "%253A"
    assert channel_name(None, "group", "admins:news", "org:1") == "group:org%3A1:admins%3Anews"


@given(names)
def test_quote_is_reversible_and_never_leaves_a_colon(name: str) -> None:
    assert ":" not in quote(name)
    assert unquote(quote(name)) == name


@given(
    st.sampled_from(AUDIENCES), names, names, st.sampled_from(AUDIENCES), names, names,
)
def test_distinct_triples_give_distinct_channels(a1, n1, f1, a2, n2, f2) -> None:
    """The collision of the review: (group, org:1, admins:news) vs (group, org:1:admins, news)."""
    first = channel_name(None, a1, f1, None if a1 == "broadcast" else n1)
    second = channel_name(None, a2, f2, None if a2 == "broadcast" else n2)
    def triple(audience: str, facility: str, name: str) -> tuple[str, str, str | None]:
        return audience, facility, None if audience == "broadcast" else name

    same = triple(a1, f1, n1) == triple(a2, f2, n2)
    assert (first == second) == same


@given(st.sampled_from(AUDIENCES), names, names, st.sampled_from(AUDIENCES), names, names)
def test_no_channel_equals_an_internal_key(a1, n1, f1, a2, n2, f2) -> None:
    channel = channel_name("p", a1, f1, n1)
    other = channel_name("p", a2, f2, n2)
    for internal in (stamp_key(other), history_key(other), epoch_key(other)):
        assert channel != internal
        assert is_internal(internal)
    assert not is_internal(channel)


def test_a_channel_needs_a_name_outside_broadcast() -> None:
    with pytest.raises(InvalidName):
        channel_name(None, "user", "chat")


@pytest.mark.parametrize("facility", ["", "a" * 129, "nul\x00", "line\nbreak", "tab\t", "\x7f"])
def test_check_facility_refuses(facility: str) -> None:
    with pytest.raises(InvalidName):
        check_facility(facility, 128)


@pytest.mark.parametrize("facility", ["chat", "a" * 128, "café", "room 1", "a:b", "50%"])
def test_check_facility_accepts(facility: str) -> None:
    check_facility(facility, 128)


prefixes = st.one_of(st.none(), st.text(min_size=1, max_size=6))


@given(prefixes, st.sampled_from(AUDIENCES), names, names, st.sampled_from(AUDIENCES), names, names)
def test_no_channel_equals_a_presence_key(prefix, a1, n1, f1, a2, n2, f2) -> None:
    """Presence keys start with [PREFIX:]@, channels with their audience: never equal; distinct
    channels have distinct presence keys and events channels."""
    channel = channel_name(prefix, a1, f1, n1)
    other = channel_name(prefix, a2, f2, n2)
    connections, users = presence_keys(prefix, other)
    for internal in (connections, users, presence_events_channel(other)):
        assert channel != internal
        assert is_internal(internal, prefix)
    assert not is_internal(channel, prefix)
    if channel != other:
        assert presence_keys(prefix, channel)[0] != connections
        assert presence_events_channel(channel) != presence_events_channel(other)


def _hash_tag(key: str) -> str:
    # Redis Cluster's rule: the text between the first "{" and the next "}", if not empty.
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@given(prefixes, st.sampled_from(AUDIENCES), st.text(max_size=8), st.text(min_size=1, max_size=8))
def test_presence_keys_of_a_channel_share_a_hash_slot(prefix, audience, name, facility) -> None:
    """Braces in a facility or name ({x}) cannot split a channel's presence over two slots."""
    channel = channel_name(prefix, audience, facility, name or "n")
    connections, users = presence_keys(prefix, channel)
    assert _hash_tag(connections) == _hash_tag(users)
    assert "{" not in brace_quote(channel) and "}" not in brace_quote(channel)


def test_presence_keys_spelled_out() -> None:
    assert presence_keys(None, "broadcast:chat") == (
        "@{broadcast:chat}:connections",
        "@{broadcast:chat}:users",
    )
    assert presence_keys("p", "p:group:a{b}:chat")[0] == "p:@{p:group:a%7Bb%7D:chat}:connections"
    assert presence_events_channel("broadcast:chat") == "broadcast:chat:@presence"
