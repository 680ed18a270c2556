"""RedisSubscriber: the Redis side of one websocket (replaceable with WS4REDIS_SUBSCRIBER)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from .channels import ChannelPlan, parse_flags
from .history import entry_id, history_config, latest, recover
from .hub import HubInterface, Sink
from .hubs import get_hub
from .identity import identity_from_request
from .outgoing import Outgoing
from .redis_store import RedisStore, read_stored
from .settings import Settings


class RedisSubscriber(RedisStore):
    """Subscribes one websocket through the process's hub and publishes what it sends."""

    subscription_channels = (
        "subscribe-session",
        "subscribe-group",
        "subscribe-user",
        "subscribe-broadcast",
    )
    publish_channels = ("publish-session", "publish-group", "publish-user", "publish-broadcast")

    def __init__(
        self,
        connection: redis.Redis | None = None,
        settings: Settings | None = None,
        hub: HubInterface | None = None,
    ) -> None:
        super().__init__(connection=connection, settings=settings)
        self._hub = hub
        self.plan = ChannelPlan()
        self._sink: Sink | None = None
        self._channels: tuple[bytes, ...] = ()
        self._channels_of: ChannelPlan | None = None

    @property
    def hub(self) -> HubInterface:
        if self._hub is None:
            self._hub = get_hub(self.settings.connection)
        return self._hub

    def set_pubsub_channels(self, request: Any, channels: Iterable[str]) -> ChannelPlan:
        """Resolve the allowed flags against the request's identity.

        Args:
            request: the websocket's request; its ``facility`` attribute names the facility.
            channels: the allowed flags (``subscribe-broadcast``, ``publish-user``, ``echo``...).
        """
        self.facility = request.facility
        flags = parse_flags("&".join(channels))
        self.plan = ChannelPlan.resolve(
            flags, request.facility, identity_from_request(request), self.settings.prefix
        )
        self._publishers = list(self.plan.publish)
        return self.plan

    @property
    def subscribed_channels(self) -> tuple[bytes, ...]:
        """The channels of ``plan.subscribe``, encoded (computed once per plan)."""
        plan = self.plan
        if self._channels_of is not plan:
            self._channels = tuple(ch.encode("utf-8") for ch in plan.subscribe)
            self._channels_of = plan
        return self._channels

    def subscribe(self, sink: Sink) -> None:
        """Route this websocket's channels to ``sink``; returns once Redis confirmed them."""
        self._sink = sink
        self.hub.subscribe(self.subscribed_channels, sink, self.settings.subscribe_timeout)

    def get_persisted_messages(self) -> list[Outgoing]:
        """The stored last message of each subscribed channel, oldest first."""
        if self.settings.expire <= 0 or not self.plan.subscribe:
            return []
        found = read_stored(self._connection, self.plan.subscribe)
        found.sort(key=lambda item: item[0])
        return [
            Outgoing(payload, channel.encode(), binary=binary)
            for _, channel, (payload, binary) in found
        ]

    def get_recovery_messages(
        self, since: dict[str, str]
    ) -> tuple[list[Outgoing], dict[bytes, tuple[int, int]]]:
        """What a websocket that asked for recovery receives first, and the seam to skip.

        For each subscribed channel with history: the entries after the client's position
        for it (``since`` maps labels to positions), a resync notice when they are gone, or
        the newest entry for a client that has no position yet. Channels without history get
        their persisted message, as for any websocket.
        """
        history = history_config(self.settings.history, self.facility)
        messages: list[Outgoing] = []
        skip: dict[bytes, tuple[int, int]] = {}
        for channel in self.plan.subscribe if history else ():
            label = self.plan.labels.get(channel, "")
            key = channel.encode()
            position = since.get(label)
            if position is None:
                newest = latest(self._connection, channel)
                entries = [newest] if newest else []
            else:
                budget = max(self.settings.max_pending_messages - len(messages), 0)
                recovered = recover(self._connection, channel, position, budget)
                if recovered.resync:
                    messages.append(Outgoing(b"!resync " + label.encode()))
                    continue
                entries = recovered.entries
                skip[key] = entry_id(position.encode())
            messages.extend(Outgoing(payload, key, pos, binary) for pos, payload, binary in entries)
            if entries:
                skip[key] = entry_id(entries[-1][0])
        if history is None:
            messages = self.get_persisted_messages()
        return messages, skip

    def release(self) -> None:
        """Unsubscribe this websocket; the hub releases channels nobody else wants."""
        if self._sink is not None:
            self.hub.unsubscribe(self.subscribed_channels, self._sink)
            self._sink = None
