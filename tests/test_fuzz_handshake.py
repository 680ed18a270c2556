"""Property-based handshakes (hypothesis) over facility paths and query strings, against one
real server process that must serve every example.

For any facility (any Unicode text, percent-encoded as browsers do) and any query string (the
known flags mixed with arbitrary keys and values, percent-encoded): a non-empty facility is
upgraded and an empty one gets 404, never a 5xx; the websocket receives what Django code
publishes with ``RedisPublisher(facility=...)`` exactly when the query asks for
``subscribe-broadcast``; and nothing stays subscribed afterwards.
"""

from __future__ import annotations

import base64
import os
import socket
import string
import struct
from urllib.parse import quote

import pytest
from conftest import wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from raw_client import CLOSE, RawClient, encode_client_frame, handshake_request

from ws4redis_gevent.channels import ECHO_FLAG, KNOWN_FLAGS, PUBLISH_FLAGS, SUBSCRIBE_FLAGS
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis directory in the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

facilities = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
# ws4redis' flags; the flags of later features change what a websocket receives first.
FLAGS = (*SUBSCRIBE_FLAGS, *PUBLISH_FLAGS, ECHO_FLAG)
OTHER_FLAGS = KNOWN_FLAGS - set(FLAGS)
keys = st.one_of(
    st.sampled_from(FLAGS),
    st.text(max_size=12).filter(lambda key: key not in OTHER_FLAGS and key != "since"),
)
values = st.one_of(st.none(), st.text(max_size=12))
queries = st.lists(st.tuples(keys, values), max_size=8)


def query_string(pairs: list[tuple[str, str | None]]) -> str:
    """Each key and value percent-encoded whole, so that the parse is unambiguous."""
    parts = []
    for key, value in pairs:
        part = quote(key, safe="")
        if value is not None:
            part += "=" + quote(value, safe="")
        parts.append(part)
    return "&".join(parts)


def open_raw(port: int, target: str) -> tuple[socket.socket, int, bytes]:
    """Send a handshake for ``target``; the socket, the status and whatever followed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(handshake_request(target, key))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, int(head.split()[1]), rest


class Adopted(RawClient):
    """RawClient's checking frame reader, on a socket whose handshake was made here."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._buffer = buffered
        self.headers: dict[str, str] = {}  # the handshake offered no extension


@pytest.fixture
def fuzz_server(start_server):
    return start_server(expire=0, env={"WS4REDIS_TEST_LOG_LEVEL": "WARNING"})


@FUZZ
@given(facility=facilities, pairs=queries)
@example(facility="é", pairs=[("subscribe-broadcast", None)])
@example(facility="a b/c?d#e%f", pairs=[("subscribe-broadcast", "")])
@example(facility="", pairs=[("subscribe-broadcast", None)])
@example(facility="x", pairs=[("subscribe%2Dbroadcast", None)])
def test_any_facility_and_query(fuzz_server, redis_url, facility, pairs):
    server = fuzz_server
    query = query_string(pairs)
    target = "/ws/" + quote(facility, safe="") + ("?" + query if query else "")
    subscribes = "subscribe-broadcast" in [key for key, _ in pairs]
    sock, status, rest = open_raw(server.port, target)
    with sock:
        assert status < 500, (target, status)
        if not facility:
            assert status == 404, (target, status)
            return
        if not facility.isprintable() or len(facility) > 128:
            # keys.check_facility: control characters, or longer than the default limit.
            assert status == 400, (target, status)
            return
        assert status == 101, (target, status)
        client = Adopted(sock, rest)
        publisher = RedisPublisher(
            facility=facility, broadcast=True, settings=Settings(connection=redis_url)
        )
        publisher.publish_message("marker")
        if subscribes:
            frame = client.read_frame()
            assert (frame.opcode, frame.payload) == (0x1, b"marker"), target
        sock.sendall(encode_client_frame(CLOSE, struct.pack("!H", 1000)))
        close, before = client.read_until_close()
        assert close.close_code == 1000
        assert before == [], f"{target} received a message it did not subscribe to"
    wait_for(lambda: (s := server.stats())["websockets"] == 0 and s["channels"] == {})


@FUZZ
@given(path=st.text(st.sampled_from(string.digits + string.ascii_letters + string.punctuation)))
@example(path="%")
@example(path="%zz%ff%c3")
@example(path="../../etc/passwd")
def test_any_raw_path_under_the_prefix(fuzz_server, path):
    """Raw printable paths, broken percent-escapes included: never a 5xx, nothing left open."""
    sock, status, _ = open_raw(fuzz_server.port, "/ws/" + path)
    sock.close()
    assert status < 500, (path, status)
    wait_for(lambda: fuzz_server.stats()["websockets"] == 0)
