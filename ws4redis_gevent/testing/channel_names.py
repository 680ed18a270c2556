"""Channel names read back into their parts (the inverse of ``channels.channel_name``)."""

from __future__ import annotations

from typing import NamedTuple

from ..channels import AUDIENCES


class ChannelName(NamedTuple):
    """The parts of a channel name; ``name`` is None for broadcast, ``prefix`` "" without."""

    prefix: str
    audience: str
    name: str | None
    facility: str


def parse_channel(channel: str) -> ChannelName:
    """Split ``[PREFIX:]broadcast:FACILITY`` or ``[PREFIX:]AUDIENCE:NAME:FACILITY``.

    Raises:
        ValueError: not a channel name of this library.
    """
    parts = channel.split(":")
    if len(parts) >= 2 and parts[-2] == "broadcast":
        return ChannelName(":".join(parts[:-2]), "broadcast", None, parts[-1])
    if len(parts) >= 3 and parts[-3] in AUDIENCES:
        return ChannelName(":".join(parts[:-3]), parts[-3], parts[-2], parts[-1])
    raise ValueError(f"not a ws4redis channel name: {channel!r}")
