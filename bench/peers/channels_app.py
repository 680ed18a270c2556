"""The Django Channels peer: a consumer that joins the group ``bench`` and forwards what the
group gets, over channels-redis' ``RedisPubSubChannelLayer``; served by uvicorn (uvloop,
``websockets``, compression off).

    uvicorn bench.peers.channels_app:application --ws websockets --ws-per-message-deflate false

A Channels project publishes with ``channel_layer.group_send("bench", {"type": "bench.message",
"text": ...})``: one PUBLISH of the msgpack-encoded event to the Redis channel
``asgi__group__bench``. The benchmark publishes exactly those bytes (bench/peers/targets.py).
The Redis URL comes from ``WS4REDIS_BENCH_REDIS``. Runs in the peers' own venv.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["channels"],
    ASGI_APPLICATION="bench.peers.channels_app.application",
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [os.environ.get("WS4REDIS_BENCH_REDIS", "redis://127.0.0.1")]},
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncWebsocketConsumer):
    """Joins the group on connect (``groups``), sends each group event on as a text frame."""

    groups = ["bench"]

    async def bench_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/bench", BenchConsumer.as_asgi())])}
)
