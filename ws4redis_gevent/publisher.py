"""RedisPublisher: what Django code (or any code) uses to send messages to websockets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from .redis_store import RedisMessage, RedisStore
from .settings import Settings

_AUDIENCE_ORDER = {
    "broadcast": ("broadcast",),
    "group": ("group",),
    "user": ("user",),
    "session": ("session",),
    "any": ("session", "user", "group", "broadcast"),
}


class RedisPublisher(RedisStore):
    """Publishes messages on the channels of a facility and its audiences.

    Example::

        RedisPublisher(facility="foobar", broadcast=True).publish_message(RedisMessage("Hi"))
        RedisPublisher(facility="foobar", users=[SELF], request=request).publish_message("Hi")
    """

    def __init__(
        self,
        facility: str | None = None,
        broadcast: bool = False,
        users: Iterable[Any] = (),
        groups: Iterable[Any] = (),
        sessions: Iterable[Any] = (),
        request: Any = None,
        connection: redis.Redis | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(connection=connection, settings=settings)
        self.facility = facility
        if facility is not None:
            self._publishers = self._get_message_channels(
                request=request,
                facility=facility,
                broadcast=broadcast,
                groups=groups,
                users=users,
                sessions=sessions,
            )

    @property
    def channels(self) -> list[str]:
        """The Redis channels this publisher publishes on."""
        return list(self._publishers)

    def fetch_message(
        self, request: Any, facility: str, audience: str = "any"
    ) -> RedisMessage | None:
        """The newest persisted message of ``facility`` for this request's audience(s).

        Args:
            request: the current request; SELF resolves against its user, groups and session.
            facility: the facility name.
            audience: ``broadcast``, ``group``, ``user``, ``session`` or ``any``.

        Returns:
            The newest message stored among the searched channels, or None.
        """
        if audience not in _AUDIENCE_ORDER:
            raise ValueError(f"audience must be one of {', '.join(_AUDIENCE_ORDER)}")
        from .redis_store import SELF

        # In ws4redis' order of priority, which decides between messages stored at the same time
        # (or stored by ws4redis, without a time).
        channels = [
            channel
            for wanted in _AUDIENCE_ORDER[audience]
            for channel in self._get_message_channels(
                request=request,
                facility=facility,
                broadcast=wanted == "broadcast",
                groups=[SELF] if wanted == "group" else (),
                users=[SELF] if wanted == "user" else (),
                sessions=[SELF] if wanted == "session" else (),
            )
        ]
        return self.fetch_newest(channels)
