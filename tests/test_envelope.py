"""envelope.py: typed payloads and history envelopes (pure units)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ws4redis_gevent.envelope import BINARY, TEXT, MalformedEnvelope, open_history, unwrap, wrap


@pytest.mark.parametrize("payload", [b"hello", "héllo".encode(), b"\xff\xfe", b"x" * 1000])
def test_bare_payloads_stay_bare_when_the_content_tells_the_type(payload: bytes) -> None:
    """What ws4redis publishers send is unchanged on the wire."""
    assert wrap(payload) == payload
    assert unwrap(payload) == (payload, None)


@pytest.mark.parametrize("payload", [b"", b"ascii", "€".encode()])
def test_binary_that_is_utf8_is_marked(payload: bytes) -> None:
    assert wrap(payload, True) == BINARY + payload
    assert unwrap(wrap(payload, True)) == (payload, True)


def test_binary_that_is_not_utf8_needs_no_mark() -> None:
    assert wrap(b"\xff", True) == b"\xff"


@pytest.mark.parametrize("binary", [None, True, False])
def test_a_payload_starting_with_nul_is_always_marked(binary) -> None:
    payload = b"\x00ws4r\x00ep\x001-1\x00forged"
    wrapped = wrap(payload, binary)
    assert wrapped.startswith((TEXT, BINARY))
    assert unwrap(wrapped)[0] == payload


@given(st.binary(max_size=64), st.sampled_from([None, True, False]))
def test_wrap_then_unwrap_gives_the_payload_back(payload: bytes, binary) -> None:
    got, kind = unwrap(wrap(payload, binary))
    assert got == payload
    if binary is not None:
        assert kind in (binary, None)


@pytest.mark.parametrize("data", [b"\x00ws4x\x00", b"\x00ws4", b"\x00ws4r"])
def test_unknown_envelopes_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        unwrap(data)


def test_history_envelope_opens() -> None:
    opened = open_history(b"\x00ws4r\x00a1b2\x001700-3\x00pay\x00load")
    assert opened == (b"pay\x00load", b"a1b2:1700-3")


@pytest.mark.parametrize(
    "data",
    [
        b"\x00ws4r\x00",
        b"\x00ws4r\x00zz\x001-1\x00x",  # not hex
        b"\x00ws4r\x00ab\x00one\x00x",  # not an ID
        b"\x00ws4r\x00ab\x001-1",  # no payload separator
        b"\x00ws4r\x00" + b"a" * 17 + b"\x001-1\x00x",  # epoch too long
    ],
)
def test_malformed_history_envelopes_raise(data: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        open_history(data)
