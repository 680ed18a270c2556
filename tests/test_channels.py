"""Unit tests of query flags and Redis channel names (ws4redis_gevent/channels.py)."""

from __future__ import annotations

import pytest

from ws4redis_gevent.channels import (
    ANONYMOUS,
    ECHO_FLAG,
    PUBLISH_FLAGS,
    SUBSCRIBE_FLAGS,
    ChannelPlan,
    Identity,
    channel_name,
    parse_flags,
)

ALL_FLAGS = [*SUBSCRIBE_FLAGS, *PUBLISH_FLAGS, ECHO_FLAG]
ALICE = Identity(user="alice", groups=("staff", "admins"), session_key="sk1")


# parse_flags


def test_parse_flags_keeps_known_flags_in_order() -> None:
    """Known flags come back in the order of the query string."""
    query = "publish-user&subscribe-broadcast&echo&subscribe-session"
    assert parse_flags(query) == [
        "publish-user",
        "subscribe-broadcast",
        "echo",
        "subscribe-session",
    ]


def test_parse_flags_knows_all_ws4redis_flags() -> None:
    """Every documented flag is recognised."""
    assert parse_flags("&".join(ALL_FLAGS)) == ALL_FLAGS


def test_parse_flags_ignores_unknown_flags() -> None:
    """Unknown names, near-misses and other parameters are ignored."""
    query = "foo&subscribe-everything&subscribe_broadcast&Subscribe-Broadcast&subscribe-user&x=1"
    assert parse_flags(query) == ["subscribe-user"]


def test_parse_flags_removes_duplicates_keeping_first_position() -> None:
    """A repeated flag appears once, where it first appeared."""
    query = "subscribe-user&echo&subscribe-user&publish-broadcast&echo"
    assert parse_flags(query) == ["subscribe-user", "echo", "publish-broadcast"]


def test_parse_flags_ignores_values() -> None:
    """'echo=1' or 'subscribe-broadcast=false' count as the flag itself."""
    assert parse_flags("echo=1&subscribe-broadcast=false&publish-user=") == [
        "echo",
        "subscribe-broadcast",
        "publish-user",
    ]


@pytest.mark.parametrize("query", ["", "&&", "=", "unknown"])
def test_parse_flags_empty(query: str) -> None:
    """No known flag gives an empty list."""
    assert parse_flags(query) == []


# channel_name


@pytest.mark.parametrize(
    ("audience", "name", "expected"),
    [
        ("broadcast", None, "broadcast:chat"),
        ("user", "alice", "user:alice:chat"),
        ("group", "staff", "group:staff:chat"),
        ("session", "sk1", "session:sk1:chat"),
    ],
)
def test_channel_name_without_prefix(audience: str, name: str | None, expected: str) -> None:
    """ws4redis' names: broadcast:F, user:NAME:F, group:NAME:F, session:KEY:F."""
    assert channel_name(None, audience, "chat", name) == expected
    assert channel_name("", audience, "chat", name) == expected


@pytest.mark.parametrize(
    ("audience", "name", "expected"),
    [
        ("broadcast", None, "myapp:broadcast:chat"),
        ("user", "alice", "myapp:user:alice:chat"),
        ("group", "staff", "myapp:group:staff:chat"),
        ("session", "sk1", "myapp:session:sk1:chat"),
    ],
)
def test_channel_name_with_prefix(audience: str, name: str | None, expected: str) -> None:
    """WS4REDIS_PREFIX and a colon go in front of every name."""
    assert channel_name("myapp", audience, "chat", name) == expected


def test_broadcast_channel_ignores_name() -> None:
    """A name given for broadcast does not appear in the channel."""
    assert channel_name(None, "broadcast", "chat", "alice") == "broadcast:chat"


# ChannelPlan.resolve


def test_anonymous_drops_user_group_session_and_keeps_broadcast() -> None:
    """Without a user or session, SELF resolves to nothing: those flags are dropped."""
    plan = ChannelPlan.resolve(ALL_FLAGS, "chat", ANONYMOUS, None)
    assert plan.subscribe == ("broadcast:chat",)
    assert plan.publish == ("broadcast:chat",)
    assert set(plan.dropped) == {
        "subscribe-user",
        "subscribe-group",
        "subscribe-session",
        "publish-user",
        "publish-group",
        "publish-session",
    }


@pytest.mark.parametrize(
    "identity",
    [
        ANONYMOUS,
        Identity(session_key="sk1"),
        Identity(user="alice"),
        Identity(groups=("staff",)),  # groups without a user: not authenticated
        Identity(user="", groups=("staff",), session_key=""),
    ],
)
@pytest.mark.parametrize("prefix", [None, "p"])
def test_resolve_never_makes_placeholder_channels(identity: Identity, prefix: str | None) -> None:
    """No channel ever names 'SELF' or 'None', nor has an empty name part."""
    plan = ChannelPlan.resolve(ALL_FLAGS, "chat", identity, prefix)
    for channel in plan.subscribe + plan.publish:
        assert "SELF" not in channel
        assert "None" not in channel
        assert "::" not in channel


def test_authenticated_identity_gets_all_audiences() -> None:
    """A user with groups and a session: one channel per group, plus user and session."""
    flags = [*SUBSCRIBE_FLAGS, *PUBLISH_FLAGS]
    plan = ChannelPlan.resolve(flags, "chat", ALICE, None)
    expected = (
        "broadcast:chat",
        "user:alice:chat",
        "group:staff:chat",
        "group:admins:chat",
        "session:sk1:chat",
    )
    assert plan.subscribe == expected
    assert plan.publish == expected
    assert plan.dropped == ()
    assert not plan.echo


def test_authenticated_identity_with_prefix() -> None:
    """The prefix applies to every resolved channel."""
    plan = ChannelPlan.resolve(["subscribe-group", "publish-user"], "f", ALICE, "app")
    assert plan.subscribe == ("app:group:staff:f", "app:group:admins:f")
    assert plan.publish == ("app:user:alice:f",)


def test_user_without_groups_drops_group_flag() -> None:
    """An authenticated user in no group has no group channel."""
    plan = ChannelPlan.resolve(
        ["subscribe-user", "subscribe-group"], "chat", Identity(user="bob"), None
    )
    assert plan.subscribe == ("user:bob:chat",)
    assert plan.dropped == ("subscribe-group",)


def test_session_key_without_user_keeps_session_audience() -> None:
    """An anonymous visitor with a session still gets the session channel."""
    identity = Identity(session_key="sk9")
    plan = ChannelPlan.resolve(
        ["subscribe-session", "publish-session", "subscribe-user", "subscribe-group"],
        "chat",
        identity,
        None,
    )
    assert plan.subscribe == ("session:sk9:chat",)
    assert plan.publish == ("session:sk9:chat",)
    assert plan.dropped == ("subscribe-user", "subscribe-group")


def test_groups_without_user_are_not_used() -> None:
    """Group names alone (no authenticated user) give no group channel."""
    plan = ChannelPlan.resolve(["subscribe-group"], "chat", Identity(groups=("staff",)), None)
    assert plan.subscribe == ()
    assert plan.dropped == ("subscribe-group",)


def test_subscribe_and_publish_are_separate() -> None:
    """Subscribe flags only fill subscribe, publish flags only fill publish."""
    plan = ChannelPlan.resolve(["subscribe-broadcast", "publish-user"], "chat", ALICE, None)
    assert plan.subscribe == ("broadcast:chat",)
    assert plan.publish == ("user:alice:chat",)


@pytest.mark.parametrize(
    ("flags", "echo"),
    [(["subscribe-broadcast", "echo"], True), (["echo"], True), (["subscribe-broadcast"], False)],
)
def test_echo_flag(flags: list[str], echo: bool) -> None:
    """echo is set by the 'echo' flag and makes no channel."""
    plan = ChannelPlan.resolve(flags, "chat", ANONYMOUS, None)
    assert plan.echo is echo
    assert "echo" not in plan.dropped


def test_resolve_accepts_an_iterator_of_flags() -> None:
    """Flags given as a one-shot iterator are all used, echo included."""
    plan = ChannelPlan.resolve(iter(["subscribe-broadcast", "echo"]), "chat", ANONYMOUS, None)
    assert plan.subscribe == ("broadcast:chat",)
    assert plan.echo


def test_identity_names_per_audience() -> None:
    """Identity.names gives what SELF stands for in each audience."""
    assert ALICE.names("user") == ("alice",)
    assert ALICE.names("group") == ("staff", "admins")
    assert ALICE.names("session") == ("sk1",)
    assert ALICE.names("broadcast") == ()
    assert ANONYMOUS.names("user") == ()
    assert ANONYMOUS.names("session") == ()


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("staff", "staff"),
        ("org:1@x", "org:1@x"),
        ("my team", "my%20team"),
        ("50% off", "50%25%20off"),
        ("a\nb\rc\td", "a%0Ab%0Dc%09d"),
        ("caf\u00e9 \u2028", "caf\u00e9%20%E2%80%A8"),
    ],
)
def test_group_labels_encode_what_breaks_a_tagged_frame(name, label):
    """Spaces, line breaks, control characters and "%" are percent-encoded in labels; names
    without them keep their label; decoding gives the name back."""
    from urllib.parse import unquote

    plan = ChannelPlan.resolve(["subscribe-group"], "f", Identity("u", (name,)), None)
    assert list(plan.labels.values()) == [f"group:{label}"]
    assert unquote(label) == name
