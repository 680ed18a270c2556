"""Attack review: the hub's reader must yield to the other greenlets of the worker while Redis
keeps its buffer full (a publish flood, from clients of any worker), instead of dispatching for
as long as the flood lasts. Without yielding, HTTP requests and websocket readers and writers of
the whole worker wait (up to 1.7 s measured), and slow websockets overflow because their writer
greenlets never run."""

from __future__ import annotations

import threading

import gevent
import pytest
import redis

from ws4redis_gevent.hub import Hub


class _Endless:
    """A PubSub whose buffer never runs dry: a message is always ready."""

    def get_message(self, timeout: float = 0.0):
        return {"type": "message", "channel": b"flood", "data": b"x"}


class _Client:
    def pubsub(self):
        return _Endless()


class _Sink:
    def __init__(self, stop_after: int) -> None:
        self.count = 0
        self.stop_after = stop_after
        self.seen_at: list[int] = []

    def deliver(self, message) -> bool:
        self.count += 1
        if self.count == 1:  # another greenlet becomes ready while the flood is under way
            gevent.spawn(lambda: self.seen_at.append(self.count))
        if self.count >= self.stop_after:
            raise gevent.GreenletExit
        return True

    def flush(self) -> None:
        pass

    def resync_channel(self, channel: bytes) -> bool:
        return False


def test_hub_reader_yields_while_redis_keeps_its_buffer_full():
    hub = Hub(_Client())  # type: ignore[arg-type]
    sink = _Sink(stop_after=20_000)
    hub._routes[b"flood"] = {sink}
    reader = gevent.spawn(hub._read_until_error)
    reader.join(10)
    gevent.sleep(0)
    seen_at = sink.seen_at
    assert seen_at, "the other greenlet never ran"
    assert seen_at[0] < 1000, (
        f"another greenlet waited for {seen_at[0]} dispatched messages (the whole flood)"
    )


def test_publish_flood_does_not_block_the_worker_event_loop(start_server, redis_url):
    """Live: gevent's monitor thread in the server reports any greenlet that keeps the event
    loop for more than 0.5 s; a flood of 200,000 messages on a subscribed channel must not make
    the hub's reader such a greenlet."""
    server = start_server(
        env={"GEVENT_MONITOR_THREAD_ENABLE": "1", "GEVENT_MAX_BLOCKING_TIME": "0.5"}
    )
    from raw_client import RawClient

    with RawClient(server.port, "/ws/feed?subscribe-broadcast") as ws:

        def drain() -> None:
            try:
                while ws.sock.recv(1 << 20):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()
        with redis.Redis.from_url(redis_url) as client:
            for _ in range(40):
                with client.pipeline(transaction=False) as pipe:
                    for _ in range(5000):
                        pipe.publish("broadcast:feed", b"z" * 100)
                    pipe.execute()
        server.stats()  # the server is still there and answers
    err = server.stop()
    blocked = [line for line in err.splitlines() if "appears to be blocked" in line]
    assert not [line for line in blocked if "_read_forever" in line], "\n".join(blocked[:3])


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
