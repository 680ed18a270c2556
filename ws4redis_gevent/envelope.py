"""What travels on a channel and sits in a stored key: payloads with their type, and envelopes.

Three forms, all bytes:

- A *bare* payload, as ws4redis and any other publisher send it. Its type is decided by its
  content, as ws4redis did: text when it is valid UTF-8, binary otherwise.
- A *typed* payload, ``\\x00ws4t\\x00PAYLOAD`` (text) or ``\\x00ws4b\\x00PAYLOAD`` (binary).
  Our publishers write it only where the content cannot tell: binary that happens to be valid
  UTF-8 (the empty payload included), and any payload that starts with a NUL byte, so that no
  payload, whoever sent it, can pass for an envelope.
- A *history envelope*, ``\\x00ws4r\\x00EPOCH\\x00ID\\x00PAYLOAD``, where PAYLOAD is bare or
  typed, published by the history script (history.py) with the message's stream position.

- A *presence envelope*, ``\x00ws4p\x00JSON``: join/leave events of a channel (presence.py),
  published only on the channel's events channel (keys.presence_events_channel), which no
  client can publish on; websockets that did not ask for presence never subscribe to it.

Whatever starts with ``\\x00ws4`` and does not parse is malformed (``MalformedEnvelope``); the
hub drops it, logs and counts it, and tells websockets that track positions to resync.
"""

from __future__ import annotations

import re

MARK = b"\x00ws4"
TEXT = b"\x00ws4t\x00"
BINARY = b"\x00ws4b\x00"
HISTORY = b"\x00ws4r\x00"
PRESENCE = b"\x00ws4p\x00"

# An epoch is drawn by history.new_epoch (8 hex digits); a stream ID is MILLIS-SEQ.
_POSITION = re.compile(rb"[0-9a-f]{1,16}\x00[0-9]{1,20}-[0-9]{1,20}\Z")


class MalformedEnvelope(ValueError):
    """Data that claims to be an envelope (starts with ``\\x00ws4``) and is not one."""


def is_utf8(payload: bytes) -> bool:
    """Whether ``payload`` is valid UTF-8 (what a text frame may carry)."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def wrap(payload: bytes, binary: bool | None = None) -> bytes:
    """The form of ``payload`` to publish and store, keeping its type.

    Args:
        payload: the message.
        binary: True for a binary message, False for text (the caller has checked that it
            is UTF-8), None to let the content decide on arrival (ws4redis' behaviour).
    """
    if payload[:1] == b"\x00":
        if binary is None:
            binary = not is_utf8(payload)
        return (BINARY if binary else TEXT) + payload
    if binary and is_utf8(payload):
        return BINARY + payload
    return payload


def unwrap(data: bytes) -> tuple[bytes, bool | None]:
    """Split stored or published data into (payload, binary); binary None: decided by content.

    Raises:
        MalformedEnvelope: ``data`` starts like an envelope but is none of ours.
    """
    if data[:1] != b"\x00":
        return data, None
    if data.startswith(TEXT):
        payload = data[len(TEXT) :]
        if not is_utf8(payload):  # never from our publishers; a text frame must be UTF-8
            raise MalformedEnvelope("typed text that is not UTF-8")
        return payload, False
    if data.startswith(BINARY):
        return data[len(BINARY) :], True
    if data.startswith(MARK):
        raise MalformedEnvelope(f"unknown envelope {data[:8]!r}")
    return data, None


def open_history(data: bytes) -> tuple[bytes, bytes]:
    """Split a history envelope into (payload, position ``EPOCH:ID``); payload may be typed.

    Raises:
        MalformedEnvelope: the epoch or the stream ID is not what the history script writes.
    """
    head, separator, payload = data[len(HISTORY) :].partition(b"\x00")
    epoch = head
    entry_id, separator2, payload = payload.partition(b"\x00")
    if not (separator and separator2 and _POSITION.match(epoch + b"\x00" + entry_id)):
        raise MalformedEnvelope(f"malformed history envelope {data[:40]!r}")
    return payload, epoch + b":" + entry_id


def is_history(data: bytes) -> bool:
    """Whether ``data`` is a history envelope (checked before ``open_history``)."""
    return data.startswith(HISTORY)


def wrap_presence(event: bytes) -> bytes:
    """A presence envelope around ``event`` (JSON written by presence.py)."""
    return PRESENCE + event


def is_presence(data: bytes) -> bool:
    """Whether ``data`` is a presence envelope."""
    return data.startswith(PRESENCE)


def open_presence(data: bytes) -> bytes:
    """The event inside a presence envelope.

    Raises:
        MalformedEnvelope: not a presence envelope, or its event is not a JSON object.
    """
    event = data[len(PRESENCE) :]
    if not is_presence(data) or event[:1] != b"{" or event[-1:] != b"}":
        raise MalformedEnvelope(f"malformed presence envelope {data[:40]!r}")
    return event
