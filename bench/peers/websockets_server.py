"""The Python `websockets` peer: asyncio (uvloop when it installs), redis.asyncio pub/sub, and
``websockets.broadcast`` to every open connection, compression off.

    python websockets_server.py PORT REDIS_URL CHANNEL

Written the way the library's docs suggest ("Broadcasting" in the websockets guide). Prints
``READY`` once it listens and its subscription is in place. Runs in the peers' own venv.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as redis
from websockets.asyncio.server import ServerConnection, broadcast, serve


async def handler(websocket: ServerConnection) -> None:
    await websocket.wait_closed()  # the server tracks it in server.connections meanwhile


async def main(port: int, url: str, channel: str) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, backlog=2048) as server:
        client = redis.from_url(url, decode_responses=True)
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            print("READY", flush=True)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(server.connections, message["data"])


if __name__ == "__main__":
    arguments = (int(sys.argv[1]), sys.argv[2], sys.argv[3])
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(*arguments))
    else:
        uvloop.run(main(*arguments))
