"""What the capture reads back from Redis commands: payloads, their type, the history script.

Kept apart from capture.py: it follows the wire format of envelope.py (typed payloads, history
envelopes) and history.py's script, which capture.py does not need to know.
"""

from __future__ import annotations

from typing import Any

from .. import history
from ..envelope import is_history, is_utf8, open_history, unwrap


def decode_stored(data: bytes) -> tuple[bytes, bool]:
    """A stored (or published) typed payload as (payload, binary): the type websockets get,
    declared by the publisher, or decided by content (text when valid UTF-8)."""
    payload, binary = unwrap(data)
    return payload, (not is_utf8(payload)) if binary is None else binary


def decode_published(data: bytes) -> tuple[bytes, bool]:
    """A published message as (payload, binary): without its history envelope, if any."""
    if is_history(data):
        data, _ = open_history(data)
    return decode_stored(data)


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
