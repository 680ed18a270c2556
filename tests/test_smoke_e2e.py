from __future__ import annotations

import redis


def test_broadcast_reaches_subscriber(server, redis_url):
    with server.connect("/ws/foobar?subscribe-broadcast") as ws:
        client = redis.Redis.from_url(redis_url)
        client.publish("broadcast:foobar", b"hello")
        assert ws.recv(timeout=5) == "hello"
