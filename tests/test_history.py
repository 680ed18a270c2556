"""Opt-in history: a reconnecting client gets exactly what it missed, or is told to resync."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import quote

import pytest
import redis
from conftest import wait_for

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

HISTORY = {"feed": {"size": 1000, "ttl": 600}}


def publisher(redis_url: str, history=HISTORY, facility: str = "feed") -> RedisPublisher:
    settings = Settings(connection=redis_url, history=history, expire=0)
    return RedisPublisher(facility=facility, broadcast=True, settings=settings)


def split(frame: str | bytes) -> tuple[str, str, str]:
    """A tagged frame: (label, position, payload)."""
    text = frame.decode() if isinstance(frame, bytes) else frame
    head, _, payload = text.partition("\n")
    label, _, position = head.partition(" ")
    return label, position, payload


@pytest.fixture
def history_server(start_server):
    return start_server(history=HISTORY, expire=0)


def test_plain_clients_get_bare_payloads_and_the_stream_keeps_them(history_server, redis_url):
    with history_server.connect("/ws/feed?subscribe-broadcast") as ws:
        publisher(redis_url).publish_message("one")
        assert ws.recv(timeout=5) == "one"
    entries = redis.Redis.from_url(redis_url).xrange("broadcast:feed:@history")
    assert [fields[b"d"] for _, fields in entries] == [b"one"]


def test_recovering_client_gets_positions_and_the_newest_entry_first(history_server, redis_url):
    pub = publisher(redis_url)
    pub.publish_message("before")
    with history_server.connect("/ws/feed?subscribe-broadcast&recover") as ws:
        label, first_position, payload = split(ws.recv(timeout=5))
        assert (label, payload) == ("broadcast", "before")
        pub.publish_message("live")
        label, position, payload = split(ws.recv(timeout=5))
        assert (label, payload) == ("broadcast", "live")
        assert position.split(":")[0] == first_position.split(":")[0]  # same epoch
        assert position > first_position


def test_reconnect_after_a_killed_connection_misses_nothing_and_repeats_nothing(
    history_server, redis_url
):
    """The client's TCP connection dies mid-stream while publishing goes on; it reconnects
    with its last position and receives every message exactly once, in order."""
    pub = publisher(redis_url)
    total = 400
    stop = threading.Event()

    def publish_all():
        for i in range(total):
            pub.publish_message(str(i))
            if i % 20 == 0:
                time.sleep(0.005)  # keep publishing across the reconnect
        stop.set()

    received: list[int] = []
    last_position = None
    ws = history_server.connect("/ws/feed?subscribe-broadcast&recover", legacy=True)
    thread = threading.Thread(target=publish_all)
    thread.start()
    try:
        while len(received) < 50:
            _, last_position, payload = split(ws.recv(timeout=5))
            received.append(int(payload))
        # Kill the transport abruptly: no close frame, unread data discarded.
        sock = ws.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    finally:
        ws.close()
    assert not stop.is_set(), "publishing ended before the reconnect: the test proves nothing"
    with history_server.connect(
        f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{last_position}"
    ) as ws2:
        while len(received) < total:
            label, _, payload = split(ws2.recv(timeout=5))
            assert label == "broadcast"
            received.append(int(payload))
    thread.join(timeout=10)
    assert received == list(range(total))


def test_group_names_with_spaces_are_encoded_in_labels_and_recover(start_server, redis_url):
    """A group name with a space or "%" would break "LABEL POSITION\nPAYLOAD": the server
    percent-encodes them in labels, and a client recovers with the label it was given."""
    server = start_server(history=HISTORY, expire=0, process_request="ws_callbacks.token_auth")
    settings = Settings(connection=redis_url, history=HISTORY, expire=0)

    def publish(group: str, message: str) -> None:
        RedisPublisher(facility="feed", groups=[group], settings=settings).publish_message(message)

    path = "/ws/feed?subscribe-group&recover&token=t-tina"
    with server.connect(path) as ws:
        wait_for(lambda: len(server.stats()["channels"]) == 2)
        publish("my team", "one two")
        label, position, payload = split(ws.recv(timeout=5))
        assert (label, payload) == ("group:my%20team", "one two")
        publish("50% off", "sale")
        assert split(ws.recv(timeout=5))[::2] == ("group:50%25%20off", "sale")
    publish("my team", "missed")
    since = quote(f"{label}@{position}")
    with server.connect(f"{path}&since={since}") as ws:
        # The missed message on "my team"; the newest entry of "50% off" (no position given).
        frames = {split(ws.recv(timeout=5))[::2] for _ in range(2)}
    assert frames == {("group:my%20team", "missed"), ("group:50%25%20off", "sale")}


def test_trimmed_history_asks_for_a_resync(start_server, redis_url):
    small = {"feed": {"size": 3, "ttl": 600}}
    server = start_server(history=small, expire=0)
    pub = publisher(redis_url, history=small)
    pub.publish_message("first")
    client = redis.Redis.from_url(redis_url)
    entry_id = client.xrange("broadcast:feed:@history")[0][0].decode()
    epoch = client.get("broadcast:feed:@epoch").decode()
    for i in range(300):  # approximate trimming needs a full macro node to act
        pub.publish_message(f"m{i}")
    assert not client.xrange("broadcast:feed:@history", entry_id, entry_id)
    with server.connect(
        f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{epoch}:{entry_id}"
    ) as ws:
        assert ws.recv(timeout=5) == "!resync broadcast"


def test_redis_restart_sends_resync_and_old_positions_resync(
    history_server, redis_url, redis_server
):
    pub = publisher(redis_url)
    pub.publish_message("kept until the restart")
    with history_server.connect("/ws/feed?subscribe-broadcast&recover") as ws:
        _, position, _ = split(ws.recv(timeout=5))
        redis_server.restart()  # persistence is off: streams and epochs are gone
        assert ws.recv(timeout=15) == "!resync *"
        wait_for(lambda: history_server.stats()["channels"].get("broadcast:feed") == 1)
        # The open websocket keeps working after the hub resubscribed.
        wait_for(lambda: pub.publish_message("after") > 0, timeout=10)
        assert split(ws.recv(timeout=5))[2] == "after"
    with history_server.connect(
        f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{position}"
    ) as ws:
        assert ws.recv(timeout=5) == "!resync broadcast"


def test_concurrent_publishers_keep_one_order_per_channel(history_server, redis_url):
    clients = [
        history_server.connect("/ws/feed?subscribe-broadcast&recover", legacy=True)
        for _ in range(3)
    ]
    try:
        per_thread = 150

        def run(tag: str) -> None:
            pub = publisher(redis_url)
            for i in range(per_thread):
                pub.publish_message(f"{tag}{i}")

        threads = [threading.Thread(target=run, args=(tag,)) for tag in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sequences = []
        for ws in clients:
            seq = [split(ws.recv(timeout=5)) for _ in range(2 * per_thread)]
            positions = [p for _, p, _ in seq]
            assert positions == sorted(
                positions, key=lambda p: tuple(int(x) for x in p.split(":")[1].split("-"))
            )
            sequences.append([payload for _, _, payload in seq])
        assert sequences[0] == sequences[1] == sequences[2]
        stream = redis.Redis.from_url(redis_url).xrange("broadcast:feed:@history")
        assert [f[b"d"].decode() for _, f in stream] == sequences[0]
    finally:
        for ws in clients:
            ws.close()


def test_facility_without_history_tags_with_no_position(start_server, redis_url):
    server = start_server(history=HISTORY)  # expire left at its default: persisted messages
    settings = Settings(connection=redis_url, history=HISTORY)
    RedisPublisher(facility="other", broadcast=True, settings=settings).publish_message("kept")
    with server.connect("/ws/other?subscribe-broadcast&recover") as ws:
        assert ws.recv(timeout=5) == "broadcast -\nkept"


def test_recover_flag_is_not_subject_to_the_channel_callback(start_server, redis_url):
    server = start_server(
        history=HISTORY, expire=0, allowed_channels="ws_callbacks.subscribe_broadcast_only"
    )
    pub = publisher(redis_url)
    with server.connect("/ws/feed?subscribe-broadcast&recover") as ws:
        pub.publish_message("x")
        label, position, payload = split(ws.recv(timeout=5))
        assert (label, payload) == ("broadcast", "x") and ":" in position


def test_unknown_client_position_is_a_resync_not_a_crash(history_server, redis_url):
    publisher(redis_url).publish_message("x")
    with history_server.connect(
        "/ws/feed?subscribe-broadcast&recover&since=broadcast@nonsense:zz-top"
    ) as ws:
        assert ws.recv(timeout=5) == "!resync broadcast"
    # ... and the server goes on serving recovering clients.
    with history_server.connect("/ws/feed?subscribe-broadcast&recover") as ws:
        assert split(ws.recv(timeout=5))[2] == "x"
