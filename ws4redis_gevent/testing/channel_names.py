"""Channel names read back into their parts (the inverse of ``keys.channel_name``)."""

from __future__ import annotations

from typing import NamedTuple

from ..keys import AUDIENCES, unquote


class ChannelName(NamedTuple):
    """The parts of a channel name; ``name`` is None for broadcast, ``prefix`` "" without."""

    prefix: str
    audience: str
    name: str | None
    facility: str


def parse_channel(channel: str) -> ChannelName:
    """Split ``[PREFIX:]broadcast:FACILITY`` or ``[PREFIX:]AUDIENCE:NAME:FACILITY`` (each part
    quoted by keys.py, so the parts never contain ``:``).

    Raises:
        ValueError: not a channel name of this library.
    """
    parts = channel.split(":")
    if len(parts) >= 2 and parts[-2] == "broadcast":
        return ChannelName(":".join(parts[:-2]), "broadcast", None, unquote(parts[-1]))
    if len(parts) >= 3 and parts[-3] in AUDIENCES:
        name, facility = unquote(parts[-2]), unquote(parts[-1])
        return ChannelName(":".join(parts[:-3]), parts[-3], name, facility)
    raise ValueError(f"not a ws4redis channel name: {channel!r}")
