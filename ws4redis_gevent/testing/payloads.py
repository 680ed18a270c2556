"""What the capture reads back from Redis commands: payloads, their type, the history script.

Kept apart from capture.py: it follows the wire format of publisher and history (envelopes,
typed payloads), which capture.py does not need to know.
"""

from __future__ import annotations

from typing import Any

from .. import history


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_stored(data: bytes) -> tuple[bytes, bool]:
    """A stored message as (payload, binary)."""
    return data, not _is_utf8(data)


def decode_published(data: bytes) -> tuple[bytes, bool]:
    """A published message as (payload, binary): without its history envelope, if any."""
    payload, _ = history.open_envelope(data)
    return decode_stored(payload)


def is_history_script(args: tuple[Any, ...]) -> bool:
    """Whether a queued command is the history publish script (history.py)."""
    return len(args) > 1 and str(args[0]).upper() == "EVAL" and args[1] == history._PUBLISH_LUA


def unpack_history_eval(args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The plain commands with the history script's visible effects: publish, and store."""
    numkeys = int(args[2])
    keys, argv = args[3 : 3 + numkeys], args[3 + numkeys :]
    _, _, stored_key, stamp_key = keys
    payload, channel, _, _, _, expire, stamp = argv
    commands: list[tuple[Any, ...]] = [("PUBLISH", channel, payload)]
    if int(expire) > 0:
        commands.append(("SET", stored_key, payload, "EX", int(expire)))
        commands.append(("SET", stamp_key, stamp, "EX", int(expire)))
    return commands
