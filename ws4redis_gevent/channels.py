"""Query flags, identities and the Redis channel names they map to (wire compatible with ws4redis).

Channel names are made by keys.py, which owns the Redis key space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

from .keys import AUDIENCES, audience_channels, channel_name

SUBSCRIBE_FLAGS = tuple(f"subscribe-{audience}" for audience in AUDIENCES)
PUBLISH_FLAGS = tuple(f"publish-{audience}" for audience in AUDIENCES)
ECHO_FLAG = "echo"
RECOVER_FLAG = "recover"
PRESENCE_FLAG = "presence"  # see presence.py: who is present on the subscribed channels
# Flags that name no channel: not handed to WS4REDIS_ALLOWED_CHANNELS, never dropped by it.
MODE_FLAGS = (ECHO_FLAG, RECOVER_FLAG, PRESENCE_FLAG)
KNOWN_FLAGS = frozenset((*SUBSCRIBE_FLAGS, *PUBLISH_FLAGS, *MODE_FLAGS))

# Session key under which the Django app keeps the user's group names (the same as ws4redis).
SESSION_GROUPS_KEY = "ws4redis:memberof"
SESSION_USERNAME_KEY = "ws4redis:username"


def parse_flags(query_string: str) -> list[str]:
    """The known flags of a query string, in order, without duplicates; unknown ones are ignored."""
    # As parse_qsl reads names (split on "&", "+" and %XX decoded), without the values.
    flags: list[str] = []
    for part in query_string.split("&"):
        name = part.partition("=")[0]
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in KNOWN_FLAGS and name not in flags:
            flags.append(name)
    return flags


def parse_since(query_string: str) -> dict[str, str]:
    """Positions a recovering client reports: ``since=LABEL@POSITION``, once per channel."""
    since: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name == "since" and "@" in value:
            label, _, position = value.rpartition("@")
            since[label] = position
    return since


# What cannot stand in a tagged frame's head ("LABEL POSITION\n"): the separators (whitespace,
# line breaks), control characters, and "%" itself so that the encoding can be undone.
_LABEL_UNSAFE = re.compile(r"[%\s\x00-\x1f\x7f]")


def label_name(name: str) -> str:
    """A group name as it appears in a label: ``%``, whitespace and control characters
    percent-encoded (UTF-8), everything else unchanged, so ``decodeURIComponent`` gives the
    name back (``my team`` -> ``my%20team``)."""
    return _LABEL_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), name)


@dataclass(frozen=True)
class Identity:
    """Who a websocket belongs to: the names that SELF resolves to."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    session_key: str | None = None

    def names(self, audience: str) -> tuple[str, ...]:
        """The names SELF stands for in ``audience``; empty when there are none."""
        if audience == "user":
            return (self.user,) if self.user else ()
        if audience == "group":
            return self.groups if self.user else ()
        if audience == "session":
            return (self.session_key,) if self.session_key else ()
        return ()


ANONYMOUS = Identity()


@dataclass(frozen=True)
class ChannelPlan:
    """What one websocket subscribes to and publishes on, resolved from its flags."""

    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    echo: bool = False
    dropped: tuple[str, ...] = field(default=())
    # A name for each subscribed channel that is unique within this websocket and reveals no
    # secret (no session key, no prefix): "broadcast", "user", "session", "group:NAME" (NAME
    # through label_name, so that a label holds no space or line break).
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(
        cls, flags: Iterable[str], facility: str, identity: Identity, prefix: str | None
    ) -> ChannelPlan:
        """Map flags to channels; audiences SELF cannot resolve (anonymous) are dropped."""
        subscribe: list[str] = []
        publish: list[str] = []
        dropped: list[str] = []
        labels: dict[str, str] = {}
        flags = list(flags)
        for flag in flags:
            if flag in MODE_FLAGS:
                continue
            action, audience = flag.split("-", 1)
            names = identity.names(audience)
            if audience != "broadcast" and not names:
                dropped.append(flag)
                continue
            target = subscribe if action == "subscribe" else publish
            channels = audience_channels(prefix, facility, audience, names)
            target.extend(channels)
            if action == "subscribe":
                for channel, name in zip(channels, names or [""], strict=False):
                    labels[channel] = (
                        f"group:{label_name(name)}" if audience == "group" else audience
                    )
        return cls(
            subscribe=tuple(dict.fromkeys(subscribe)),
            publish=tuple(dict.fromkeys(publish)),
            echo=ECHO_FLAG in flags,
            dropped=tuple(dropped),
            labels=labels,
        )


# Re-exported: channel names were defined here before keys.py took the key space over.
__all__ = [
    "AUDIENCES",
    "ANONYMOUS",
    "ChannelPlan",
    "Identity",
    "KNOWN_FLAGS",
    "audience_channels",
    "channel_name",
    "parse_flags",
    "parse_since",
]
