"""One message on its way to websockets, with its frame encoded once for all of them."""

from __future__ import annotations

from .deflate import deflate_frame
from .frames import Opcode, encode_frame, encode_message


class Outgoing:
    """A message on its way to websockets: payload, channel, type, and its frame, encoded once.

    ``position`` is its place in the channel's history (``EPOCH:ID``), when it has one.
    ``binary`` is True or False when the publisher said which type it is, None when the content
    decides (text if valid UTF-8), as for messages from ws4redis publishers.
    """

    __slots__ = ("payload", "channel", "position", "binary", "_frame", "_tagged", "_deflated")

    def __init__(
        self,
        payload: bytes,
        channel: bytes | None = None,
        position: bytes | None = None,
        binary: bool | None = None,
    ) -> None:
        self.payload = payload
        self.channel = channel
        self.position = position
        self.binary = binary
        self._frame: bytes | None = None
        self._tagged: tuple[bytes, bytes] | None = None
        self._deflated: tuple[int, bytes] | None = None

    @property
    def frame(self) -> bytes:
        """The websocket frame carrying this message."""
        if self._frame is None:
            self._frame = _encode(self.payload, self.binary)
        return self._frame

    def deflated_frame(self, window_bits: int) -> bytes:
        """The frame compressed for websockets that negotiated permessage-deflate: compressed
        once, for every websocket using the same window (usually all of them)."""
        deflated = self._deflated
        if deflated is None or deflated[0] != window_bits:
            deflated = self._deflated = (window_bits, deflate_frame(self.frame, window_bits))
        return deflated[1]

    def tagged_frame(self, label: bytes) -> bytes:
        """The frame for websockets that asked for recovery: ``LABEL POSITION\\nPAYLOAD``.

        Cached for the last label, which all websockets of a channel share."""
        tagged = self._tagged
        if tagged is None or tagged[0] != label:
            head = label + b" " + (self.position or b"-") + b"\n"
            tagged = self._tagged = (label, _encode(head + self.payload, self.binary))
        return tagged[1]

    def __repr__(self) -> str:
        return f"<Outgoing {self.channel!r} {self.payload[:40]!r}>"


def _encode(payload: bytes, binary: bool | None) -> bytes:
    if binary is None:
        return encode_message(payload)
    return encode_frame(Opcode.BINARY if binary else Opcode.TEXT, payload)


PRESENCE_HEAD = b"!presence "


class PresenceFrame(Outgoing):
    """Presence of a channel (a list, or join/leave events) for websockets that asked for it.

    Sent as ``!presence LABEL\\nJSON`` in a text frame, beside tagged messages
    (``LABEL POSITION\\nPAYLOAD``), whose labels never start with ``!``: no message a publisher
    sends can pass for it.
    """

    __slots__ = ()

    def __init__(self, event: bytes, channel: bytes | None = None) -> None:
        super().__init__(event, channel, binary=False)

    @property
    def frame(self) -> bytes:
        return self.tagged_frame(b"-")

    def tagged_frame(self, label: bytes) -> bytes:
        tagged = self._tagged
        if tagged is None or tagged[0] != label:
            frame = _encode(PRESENCE_HEAD + label + b"\n" + self.payload, False)
            tagged = self._tagged = (label, frame)
        return tagged[1]
