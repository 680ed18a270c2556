"""RedisSubscriber: the Redis side of one websocket (replaceable with WS4REDIS_SUBSCRIBER)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis

from .channels import ChannelPlan, parse_flags
from .hub import Hub, Outgoing, Sink, get_hub
from .identity import identity_from_request
from .redis_store import STAMP_SUFFIX, RedisStore
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
        hub: Hub | None = None,
    ) -> None:
        super().__init__(connection=connection, settings=settings)
        self._hub = hub
        self.plan = ChannelPlan()
        self._sink: Sink | None = None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = get_hub(self.settings.connection)
        return self._hub

    def set_pubsub_channels(self, request: Any, channels: Iterable[str]) -> ChannelPlan:
        """Resolve the allowed flags against the request's identity.

        Args:
            request: the websocket's request; its ``facility`` attribute names the facility.
            channels: the allowed flags (``subscribe-broadcast``, ``publish-user``, ``echo``...).
        """
        flags = parse_flags("&".join(channels))
        self.plan = ChannelPlan.resolve(
            flags, request.facility, identity_from_request(request), self.settings.prefix
        )
        self._publishers = list(self.plan.publish)
        return self.plan

    @property
    def subscribed_channels(self) -> frozenset[bytes]:
        return frozenset(ch.encode("utf-8") for ch in self.plan.subscribe)

    def subscribe(self, sink: Sink) -> None:
        """Route this websocket's channels to ``sink``; returns once Redis confirmed them."""
        self._sink = sink
        self.hub.subscribe(self.subscribed_channels, sink, self.settings.subscribe_timeout)

    def get_persisted_messages(self) -> list[Outgoing]:
        """The stored last message of each subscribed channel, oldest first."""
        if self.settings.expire <= 0 or not self.plan.subscribe:
            return []
        keys = [k for ch in self.plan.subscribe for k in (ch, ch + STAMP_SUFFIX)]
        values = self._connection.mget(keys)
        found: list[tuple[int, Outgoing]] = []
        for channel, message, when in zip(
            self.plan.subscribe, values[::2], values[1::2], strict=True
        ):
            if message is not None:
                outgoing = Outgoing(cast(bytes, message), channel.encode())
                found.append((int(when) if when else -1, outgoing))
        return [outgoing for _, outgoing in sorted(found, key=lambda pair: pair[0])]

    def release(self) -> None:
        """Unsubscribe this websocket; the hub releases channels nobody else wants."""
        if self._sink is not None:
            self.hub.unsubscribe(self.subscribed_channels, self._sink)
            self._sink = None
