"""The Redis key space: every channel name, stored-message key and internal key, in one place.

Channel names are ws4redis' (wire compatible)::

    [PREFIX:]broadcast:FACILITY
    [PREFIX:]user:NAME:FACILITY
    [PREFIX:]group:NAME:FACILITY
    [PREFIX:]session:KEY:FACILITY

A channel's last message is stored under the channel's own name (as ws4redis does). Everything
else this library keeps in Redis is an *internal key*: ``CHANNEL:@SUFFIX`` beside a channel, or
``[PREFIX:]@{TAG}:NAME`` for keys that a Redis Cluster must keep in one hash slot (presence).

Why no name a client chooses can reach an internal key:

1. Each part of a channel name (facility, user, group, session key) is *quoted*: ``%`` and ``:``
   become ``%25`` and ``%3A``. A quoted part never contains ``:``, so a channel name has a fixed
   number of ``:``-separated parts after the prefix: 2 for broadcast, 3 for the others. Names
   without ``%`` or ``:`` are unchanged, so ws4redis' channel names are kept for them.
2. An internal key is a channel name plus one more part, which starts with ``@``. It therefore
   has one part too many to be a channel of its audience, and the audience (the first part
   after the prefix) tells them apart across audiences.
3. Distinct (audience, name, facility) triples give distinct channels, since quoting is
   reversible and the parts are separated by ``:``.

4. A presence key starts with ``[PREFIX:]@``, where a channel starts with its audience. Its
   ``{TAG}`` is the whole channel with ``%``, ``{`` and ``}`` percent-encoded (``brace_quote``):
   it holds no brace, so every key of one channel's presence hashes to the same cluster slot
   (the text up to the first ``}`` is the same in all of them), and distinct channels give
   distinct tags.

The facility comes from the URL: ``check_facility`` refuses what no channel should carry
(control characters, too long) before anything reaches Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

AUDIENCES = ("broadcast", "user", "group", "session")

STAMP_SUFFIX = ":@published"  # when the stored message was stored (ns since the epoch)
HISTORY_SUFFIX = ":@history"  # the channel's history stream (opt-in, see history.py)
EPOCH_SUFFIX = ":@epoch"  # which life of that history the positions belong to
PRESENCE_EVENTS_SUFFIX = ":@presence"  # pub/sub only: join/leave events of the channel
INTERNAL_SUFFIXES = (STAMP_SUFFIX, HISTORY_SUFFIX, EPOCH_SUFFIX, PRESENCE_EVENTS_SUFFIX)
PRESENCE_CONNECTIONS = "connections"  # sorted set: connection -> when it expires
PRESENCE_USERS = "users"  # hash: user -> connection count (and "@v", the change counter)

DEFAULT_MAX_FACILITY_LENGTH = 128


class InvalidName(ValueError):
    """A facility (or other name) that cannot be part of a channel name; says why."""


def quote(name: str) -> str:
    """One part of a channel name: ``%`` and ``:`` percent-encoded, the rest unchanged."""
    if "%" in name or ":" in name:
        return name.replace("%", "%25").replace(":", "%3A")
    return name


def unquote(part: str) -> str:
    """The name a quoted part stands for (the inverse of ``quote``)."""
    if "%" in part:
        return part.replace("%3A", ":").replace("%25", "%")
    return part


def channel_name(prefix: str | None, audience: str, facility: str, name: str | None = None) -> str:
    """One channel name; ``name`` is the user, group or session key (none for broadcast)."""
    head = f"{prefix}:" if prefix else ""
    if audience == "broadcast":
        return f"{head}broadcast:{quote(facility)}"
    if name is None:
        raise InvalidName(f"a {audience} channel needs a name")
    return f"{head}{audience}:{quote(str(name))}:{quote(facility)}"


def audience_channels(
    prefix: str | None, facility: str, audience: str, names: Iterable[Any]
) -> list[str]:
    """The channels of ``audience`` for each of ``names`` (ignored for broadcast)."""
    if audience == "broadcast":
        return [channel_name(prefix, "broadcast", facility)]
    return [channel_name(prefix, audience, facility, name) for name in names]


def stored_message_key(channel: str) -> str:
    """Where a channel's last message is stored: under the channel's name (as ws4redis)."""
    return channel


def stamp_key(channel: str) -> str:
    """When the stored message of ``channel`` was stored."""
    return channel + STAMP_SUFFIX


def history_key(channel: str) -> str:
    """The history stream of ``channel``."""
    return channel + HISTORY_SUFFIX


def epoch_key(channel: str) -> str:
    """The epoch of ``channel``'s history."""
    return channel + EPOCH_SUFFIX


def brace_quote(channel: str) -> str:
    """A channel as a cluster hash tag: ``%``, ``{`` and ``}`` percent-encoded (reversible)."""
    if "%" in channel or "{" in channel or "}" in channel:
        return channel.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return channel


def presence_keys(prefix: str | None, channel: str) -> tuple[str, str]:
    """The presence keys of ``channel``: (connections sorted set, users hash), one slot."""
    head = f"{prefix}:@" if prefix else "@"
    tag = "{" + brace_quote(channel) + "}"
    return f"{head}{tag}:{PRESENCE_CONNECTIONS}", f"{head}{tag}:{PRESENCE_USERS}"


def presence_events_channel(channel: str) -> str:
    """The pub/sub channel carrying join/leave events of ``channel`` (no key is stored)."""
    return channel + PRESENCE_EVENTS_SUFFIX


def health_channel(prefix: str | None) -> str:
    """The channel the health endpoint keeps subscribed (nobody publishes on it). Its first
    part is no audience, so no channel a client can name is this one."""
    return f"{prefix}:ws4redis:@health" if prefix else "ws4redis:@health"


def is_internal(key: str, prefix: str | None = None) -> bool:
    """Whether ``key`` is one of this library's internal keys (not a channel).

    The suffix alone does not tell: a facility (or user) may be named ``@history``, and
    ``broadcast:@history`` is a channel. An internal key is a whole channel plus the suffix,
    or a presence key, which starts with ``[PREFIX:]@`` where channels start with their
    audience."""
    if key.startswith(f"{prefix}:@" if prefix else "@"):
        return True
    if not key.endswith(INTERNAL_SUFFIXES):
        return False
    parts = key.rpartition(":")[0].split(":")
    if len(parts) >= 2 and parts[-2] == "broadcast":
        return True
    return len(parts) >= 3 and parts[-3] in AUDIENCES[1:]


def loggable(channel: str | bytes) -> str:
    """``channel`` as it may appear in a log: a session channel's key (a credential) hidden.

    A channel ends with ``AUDIENCE:NAME:FACILITY`` (quoted parts hold no ``:``), so the part
    before the name tells a session channel, whatever the prefix."""
    text = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
    parts = text.split(":")
    if len(parts) >= 3 and parts[-3] == "session":
        parts[-2] = "***"
    return ":".join(parts)


def check_facility(facility: str, max_length: int = DEFAULT_MAX_FACILITY_LENGTH) -> None:
    """Refuse a facility that no channel may carry.

    Raises:
        InvalidName: empty, longer than ``max_length`` characters, or with control characters
            (which no Redis key of ours, log line or label should hold).
    """
    if not facility:
        raise InvalidName("no facility")
    if len(facility) > max_length:
        raise InvalidName(f"facility longer than {max_length} characters")
    if not facility.isprintable():
        raise InvalidName("facility with control characters")
