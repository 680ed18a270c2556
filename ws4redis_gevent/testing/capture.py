"""Capture what code publishes, with no Redis server: every client is an in-memory fakeredis.

While a ``PublishCapture`` is active, every Redis client this library makes (publishers,
subscribers, hubs, ``redis_client()``) is one fakeredis client, whatever WS4REDIS_CONNECTION
says: a unit test cannot publish into a real Redis by accident. Each message published on a
channel is recorded as a ``CapturedMessage`` (channel, payload, type, expiry), and stored
messages stay in the fake server, where ``fetch_message`` finds them.

Example::

    with capture_publishes() as published:
        notify_user("john", "hello")  # code under test, using RedisPublisher
    assert published.texts(user="john") == ["hello"]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

try:
    import fakeredis
except ImportError as exc:  # the plugin is loaded wherever the package is installed
    raise ImportError(
        "capturing publishes needs fakeredis: pip install 'ws4redis-gevent[testing]'"
    ) from exc
from redis.client import Pipeline

from .. import redis_store
from .channel_names import ChannelName, parse_channel
from .payloads import decode_published, decode_stored, is_history_script, unpack_history_eval


@dataclass
class CapturedMessage:
    """One message as published on one channel (a publish to N channels gives N of them).

    Attributes:
        channel: the Redis channel, e.g. ``"user:john:chat"`` (with the prefix, if any).
        payload: the message's bytes, as a websocket receives them.
        binary: whether websockets receive it as a binary message (else text).
        expire: seconds it stays stored as the channel's last message (0: not stored).
        receivers: how many subscribers Redis delivered it to (0 without a live server).
    """

    channel: str
    payload: bytes
    binary: bool
    expire: int = 0
    receivers: int = 0

    @property
    def parts(self) -> ChannelName:
        """The channel's parts: prefix, audience, name and facility."""
        return parse_channel(self.channel)

    @property
    def facility(self) -> str:
        return self.parts.facility

    @property
    def audience(self) -> str:
        """``broadcast``, ``user``, ``group`` or ``session``."""
        return self.parts.audience

    @property
    def name(self) -> str | None:
        """The user, group or session key the channel is for (None for broadcast)."""
        return self.parts.name

    @property
    def text(self) -> str:
        """The payload as text.

        Raises:
            ValueError: the message is binary.
        """
        if self.binary:
            raise ValueError(f"a binary message has no text: {self.payload[:40]!r}")
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    @property
    def type(self) -> str:
        """``"binary"`` or ``"text"``: the websocket message type it arrives as."""
        return "binary" if self.binary else "text"


class _RecordingPipeline(Pipeline):
    """A fakeredis pipeline that tells its capture what it publishes and stores."""

    capture: PublishCapture

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        self.command_stack = []
        for args, options in stack:
            if is_history_script(args):
                # fakeredis has no Lua (without lupa): the history script's effects that a
                # unit test can see (publish, store) are run as plain commands.
                self.command_stack.extend((command, {}) for command in unpack_history_eval(args))
            else:
                self.command_stack.append((args, options))
        commands = [args for args, _ in self.command_stack]
        try:
            replies = super().execute(raise_on_error)
        finally:
            self.command_stack = []
        self.capture._record(commands, replies)
        return _fold_replies(stack, replies)


def _fold_replies(stack: list[Any], replies: list[Any]) -> list[Any]:
    """The replies in the shape of the original stack: a history script answers its PUBLISH's."""
    folded = []
    index = 0
    for args, _ in stack:
        if is_history_script(args):
            folded.append(replies[index])
            index += len(unpack_history_eval(args))
        else:
            folded.append(replies[index])
            index += 1
    return folded


class _RecordingRedis(fakeredis.FakeRedis):
    """A fakeredis client whose pipelines and publishes are recorded by its capture."""

    capture: PublishCapture

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = _RecordingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.capture = self.capture
        return pipe

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        receivers = super().publish(channel, message, **kwargs)
        self.capture._record([("PUBLISH", channel, message)], [receivers])
        return receivers

    def spublish(self, shard_channel: Any, message: Any) -> Any:
        # A cluster's sharded publish: one server here, an ordinary PUBLISH does the same.
        return self.publish(shard_channel, message)

    def mget_nonatomic(self, keys: Any, *args: Any) -> Any:
        return self.mget(keys, *args)


class PublishCapture:
    """Records what is published while it is active (``with`` block, or ``start``/``stop``).

    Attributes:
        messages: every captured message, in publish order.
        client: the fakeredis client every publisher and subscriber uses meanwhile.
    """

    def __init__(self) -> None:
        self.messages: list[CapturedMessage] = []
        self.server = fakeredis.FakeServer()
        self.client = _RecordingRedis(server=self.server)
        self.client.capture = self
        self._previous: Any = None
        self._active = False

    # -- activation ----------------------------------------------------------------------

    def start(self) -> PublishCapture:
        """Route every Redis client of this process to the fake server, until ``stop``."""
        if self._active:
            raise RuntimeError("this PublishCapture is already active")
        self._previous = redis_store.substitute_clients(self._client_for)
        self._active = True
        return self

    def stop(self) -> None:
        """Give the process its real Redis clients back (what was captured stays readable)."""
        if self._active:
            redis_store.substitute_clients(self._previous)
            self._active = False

    def __enter__(self) -> PublishCapture:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _client_for(self, connection: Any) -> redis.Redis:
        return self.client  # whatever the settings say: never a real server

    # -- recording -----------------------------------------------------------------------

    def _record(self, commands: list[tuple[Any, ...]], replies: list[Any]) -> None:
        published: dict[str, CapturedMessage] = {}
        for command, reply in zip(commands, replies, strict=True):
            name = str(command[0]).upper()
            if name in ("PUBLISH", "SPUBLISH"):
                channel = _text(command[1])
                payload, binary = decode_published(_bytes(command[2]))
                message = CapturedMessage(channel, payload, binary, receivers=int(reply))
                self.messages.append(message)
                published[channel] = message
            elif name == "SET" and _text(command[1]) in published:
                message = published[_text(command[1])]
                message.expire = _expire_of(command)

    # -- reading -------------------------------------------------------------------------

    def filter(
        self,
        facility: str | None = None,
        audience: str | None = None,
        name: str | None = None,
        channel: str | None = None,
        *,
        user: str | None = None,
        group: str | None = None,
        session: str | None = None,
        broadcast: bool = False,
    ) -> list[CapturedMessage]:
        """The messages matching every criterion given.

        ``user="john"`` is short for ``audience="user", name="john"`` (so are ``group`` and
        ``session``); ``broadcast=True`` for ``audience="broadcast"``.
        """
        for short, value in (("user", user), ("group", group), ("session", session)):
            if value is not None:
                audience, name = short, value
        if broadcast:
            audience = "broadcast"
        return [
            m
            for m in self.messages
            if (channel is None or m.channel == channel)
            and (facility is None or m.facility == facility)
            and (audience is None or m.audience == audience)
            and (name is None or m.name == name)
        ]

    def texts(self, **criteria: Any) -> list[str]:
        """The text of each matching message (see ``filter``), in publish order."""
        return [m.text for m in self.filter(**criteria)]

    def json(self, **criteria: Any) -> list[Any]:
        """Each matching message parsed as JSON (see ``filter``), in publish order."""
        return [m.json() for m in self.filter(**criteria)]

    @property
    def channels(self) -> list[str]:
        """The channels published on, each once, in the order of their first message."""
        return list(dict.fromkeys(m.channel for m in self.messages))

    def stored(self, channel: str) -> bytes | None:
        """The payload stored as ``channel``'s last message (what websockets get when they
        connect), or None."""
        data = self.client.get(channel)
        return None if data is None else decode_stored(_bytes(data))[0]

    def ttl(self, channel: str) -> int | None:
        """Seconds before ``channel``'s stored message expires; None when none is stored."""
        milliseconds = self.client.pttl(channel)
        return None if milliseconds < 0 else -(-milliseconds // 1000)

    def fetch_message(self, request: Any, facility: str, audience: str = "any") -> Any:
        """What ``RedisPublisher().fetch_message(request, facility, audience)`` returns."""
        from ..publisher import RedisPublisher

        return RedisPublisher(connection=self.client).fetch_message(request, facility, audience)

    def clear(self) -> None:
        """Forget the captured messages and empty the fake server (stored messages too)."""
        self.messages.clear()
        self.client.flushall()

    def __iter__(self) -> Iterator[CapturedMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"<PublishCapture {len(self.messages)} message(s) on {self.channels}>"


def capture_publishes() -> PublishCapture:
    """A new ``PublishCapture``, to use as a context manager."""
    return PublishCapture()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _expire_of(command: tuple[Any, ...]) -> int:
    words = [_text(part).upper() if not isinstance(part, int) else part for part in command[3:]]
    for option, unit in (("EX", 1), ("PX", 1000)):
        if option in words:
            return -(-int(words[words.index(option) + 1]) // unit)
    return 0
