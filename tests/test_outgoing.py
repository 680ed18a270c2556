"""outgoing.py: one message framed once, with the type its publisher chose (pure units)."""

from __future__ import annotations

from ws4redis_gevent.frames import Opcode
from ws4redis_gevent.outgoing import Outgoing


def test_the_content_decides_without_a_type() -> None:
    assert Outgoing(b"text").frame[0] == 0x80 | Opcode.TEXT
    assert Outgoing(b"\xff").frame[0] == 0x80 | Opcode.BINARY


def test_an_explicit_type_wins() -> None:
    assert Outgoing(b"", binary=True).frame == bytes([0x80 | Opcode.BINARY, 0])
    assert Outgoing(b"ascii", binary=True).frame[0] == 0x80 | Opcode.BINARY
    assert Outgoing(b"text", binary=False).frame[0] == 0x80 | Opcode.TEXT


def test_the_frame_is_encoded_once() -> None:
    message = Outgoing(b"x" * 200)
    assert message.frame is message.frame


def test_tagged_frames_keep_the_type() -> None:
    message = Outgoing(b"ascii", b"broadcast:chat", b"ab:1-1", binary=True)
    frame = message.tagged_frame(b"broadcast")
    assert frame[0] == 0x80 | Opcode.BINARY
    assert frame.endswith(b"broadcast ab:1-1\nascii")
    assert message.tagged_frame(b"broadcast") is frame
