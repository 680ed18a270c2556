"""Attack review: a recovering handshake must respect the websocket's queue bound.

``since=LABEL@POSITION`` makes the handshake read every history entry after POSITION (XRANGE)
and queue them all with ``Outbox.put_first``, which counts against no limit. With the default
history size (100) and 1 MiB messages, one handshake holds about 100 MiB: 10 clients that
recover from an old position and do not read held 996 MiB of the worker for the 40 s of the
write timeout (measured; a subscriber without publish rights learns an old position from any
live message). A live websocket is closed (1008) past WS4REDIS_MAX_PENDING_MESSAGES; recovery
is bounded by the same number, and beyond it the client is told to resync, as for a history
that no longer reaches back that far."""

from __future__ import annotations

import redis

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

HISTORY = {"feed": {"size": 1000, "ttl": 600}}


def test_recovery_beyond_the_pending_bound_is_a_resync(start_server, redis_url):
    server = start_server(history=HISTORY, expire=0, max_pending_messages=10)
    settings = Settings(connection=redis_url, history=HISTORY, expire=0)
    pub = RedisPublisher(facility="feed", broadcast=True, settings=settings)
    pub.publish_message("first")
    client = redis.Redis.from_url(redis_url)
    entry_id = client.xrange("broadcast:feed:@history")[0][0].decode()
    epoch = client.get("broadcast:feed:@epoch").decode()
    for i in range(50):
        pub.publish_message(f"m{i}")
    path = f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{epoch}:{entry_id}"
    with server.connect(path) as ws:
        assert ws.recv(timeout=5) == "!resync broadcast"


def test_recovery_within_the_bound_is_delivered(start_server, redis_url):
    server = start_server(history=HISTORY, expire=0, max_pending_messages=10)
    settings = Settings(connection=redis_url, history=HISTORY, expire=0)
    pub = RedisPublisher(facility="feed", broadcast=True, settings=settings)
    pub.publish_message("first")
    client = redis.Redis.from_url(redis_url)
    entry_id = client.xrange("broadcast:feed:@history")[0][0].decode()
    epoch = client.get("broadcast:feed:@epoch").decode()
    for i in range(10):
        pub.publish_message(f"m{i}")
    path = f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{epoch}:{entry_id}"
    with server.connect(path) as ws:
        got = [ws.recv(timeout=5).partition("\n")[2] for _ in range(10)]
    assert got == [f"m{i}" for i in range(10)]
