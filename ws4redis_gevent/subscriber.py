"""RedisSubscriber: the Redis side of one websocket (replaceable with WS4REDIS_SUBSCRIBER)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from .channels import ANONYMOUS, PRESENCE_FLAG, ChannelPlan, Identity, parse_flags
from .exceptions import ServiceUnavailable
from .history import entry_id, history_config, latest, recover
from .hub import HubInterface, Sink
from .hubs import get_hub
from .identity import identity_from_request
from .keys import presence_events_channel
from .outgoing import Outgoing
from .presence import (
    PresenceConfig,
    new_connection_id,
    presence_config,
    presence_frames,
    presence_token,
    tracker,
)
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
        self._identity: Identity = ANONYMOUS
        self.wants_presence = False
        self.connection_id = new_connection_id()
        self._present: tuple[str, ...] = ()  # channels this websocket is present on
        self._presence_lists: dict[str, bytes] = {}

    @property
    def hub(self) -> HubInterface:
        if self._hub is None:
            self._hub = get_hub(self.settings.connection, self.settings.write_window / 1000)
        return self._hub

    def set_pubsub_channels(self, request: Any, channels: Iterable[str]) -> ChannelPlan:
        """Resolve the allowed flags against the request's identity.

        Args:
            request: the websocket's request; its ``facility`` attribute names the facility.
            channels: the allowed flags (``subscribe-broadcast``, ``publish-user``, ``echo``...).
        """
        self.facility = request.facility
        flags = parse_flags("&".join(channels))
        self._identity = identity_from_request(request)
        self.plan = ChannelPlan.resolve(
            flags, request.facility, self._identity, self.settings.prefix
        )
        self.wants_presence = PRESENCE_FLAG in flags and self.presence is not None
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

    @property
    def presence(self) -> PresenceConfig | None:
        """The presence of this websocket's facility (WS4REDIS_PRESENCE), or None."""
        return presence_config(self.settings.presence, self.facility)

    @property
    def _events_channels(self) -> tuple[bytes, ...]:
        # The join/leave events of the subscribed channels, for websockets that asked.
        if not self.wants_presence:
            return ()
        return tuple(presence_events_channel(ch).encode() for ch in self.plan.subscribe)

    def frame_labels(self) -> dict[bytes, bytes]:
        """The label of each channel in tagged frames (recovery and presence modes)."""
        labels = {ch.encode(): label.encode() for ch, label in self.plan.labels.items()}
        for channel, label in self.plan.labels.items():
            labels[presence_events_channel(channel).encode()] = label.encode()
        return labels

    def subscribe(self, sink: Sink) -> None:
        """Route this websocket's channels to ``sink``; returns once Redis confirmed them.

        On a facility with presence, the websocket is then present on its channels."""
        self._sink = sink
        channels = self.subscribed_channels + self._events_channels
        self.hub.subscribe(channels, sink, self.settings.subscribe_timeout)
        config = self.presence
        if config is None or not self.plan.subscribe:
            return
        # Set first: if a channel fails, release() takes back those that went through.
        self._present = self.plan.subscribe
        try:
            self._presence_lists = tracker(self._connection, self.settings).enter(
                self.plan.subscribe, self._member, config, snapshot=self.wants_presence
            )
        except (redis.RedisError, OSError) as exc:
            self.release()
            raise ServiceUnavailable(f"cannot record presence: {exc}") from exc

    @property
    def _member(self) -> str:
        # The connection in presence: its id, then who it is (presence.py's format).
        return self.connection_id + " " + presence_token(self._identity, self.connection_id)

    def get_presence_frames(self) -> list[Outgoing]:
        """For a websocket that asked (``?presence``): the users of each of its channels."""
        return list(presence_frames(self._presence_lists))

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
                spent = sum(len(m.payload) for m in messages)
                byte_budget = max(self.settings.max_pending_bytes - spent, 0)
                recovered = recover(self._connection, channel, position, budget, byte_budget)
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
        if self._present:
            tracker(self._connection, self.settings).leave(self._present, self._member)
            self._present = ()
        if self._sink is not None:
            self.hub.unsubscribe(self.subscribed_channels + self._events_channels, self._sink)
            self._sink = None
