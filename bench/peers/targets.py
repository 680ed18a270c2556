"""Starting the peers under bench/fanout.py, and what the benchmark publishes to each.

``start(name, port, redis_url, cpus)`` installs the peer's environment if needed (raising
``PeerUnavailable`` when it cannot), starts it pinned to the server CPU like the project's
servers, and waits until it says it serves. ``Peer.channel`` and ``Peer.wrap`` say how the
publisher reaches it: the raw channel for ``websockets`` and Node, and for Channels the
group's Redis channel with each payload wrapped as ``group_send`` wraps an event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..measure import Cpus
from ..servers import Server
from .environments import HERE, node_peer, python_peers

PEERS = ("websockets", "node", "channels")
GROUP = "bench"
GROUP_CHANNEL = f"asgi__group__{GROUP}"  # RedisPubSubChannelLayer's name for a group
CHANNELS_EVENT_TYPE = "bench.message"  # handled by BenchConsumer.bench_message


@dataclass
class Peer:
    server: Server
    channel: str
    wrap: Callable[[bytes], bytes] | None = None


def _msgpack_str(data: bytes) -> bytes:
    """A msgpack str (the payload is ASCII, so its bytes are its UTF-8)."""
    n = len(data)
    if n < 32:
        head = bytes([0xA0 | n])
    elif n < 0x100:
        head = bytes([0xD9, n])
    elif n < 0x10000:
        head = b"\xda" + n.to_bytes(2, "big")
    else:
        head = b"\xdb" + n.to_bytes(4, "big")
    return head + data


def group_event(payload: bytes) -> bytes:
    """``msgpack.packb({"type": "bench.message", "text": payload})``: the bytes channels-redis'
    pub/sub layer PUBLISHes for ``group_send`` (no random prefix, no encryption)."""
    kind = _msgpack_str(CHANNELS_EVENT_TYPE.encode())
    return b"\x82" + _msgpack_str(b"type") + kind + _msgpack_str(b"text") + _msgpack_str(payload)


def start(name: str, port: int, redis_url: str, channel: str, env: dict[str, str],
          cpus: Cpus) -> Peer:  # fmt: skip
    """Start the peer ``name`` on ``port``; ``channel`` is the raw channel the bench uses."""
    args = [str(port), redis_url, channel]
    if name == "websockets":
        command = [str(python_peers()), str(HERE / "websockets_server.py"), *args]
        return Peer(_serve(name, command, port, env, cpus, "READY"), channel)
    if name == "node":
        node, node_env = node_peer()
        command = [node, str(HERE / "node_server.js"), *args]
        return Peer(_serve(name, command, port, {**env, **node_env}, cpus, "READY"), channel)
    if name == "channels":
        python = python_peers()
        command = [str(python), "-m", "uvicorn", "bench.peers.channels_app:application",
                   "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
                   "--ws", "websockets", "--ws-per-message-deflate", "false",
                   "--lifespan", "off", "--no-access-log", "--backlog", "2048"]  # fmt: skip
        server = _serve(name, command, port, env, cpus, "Uvicorn running on")
        return Peer(server, GROUP_CHANNEL, group_event)
    raise ValueError(f"unknown peer {name!r}")


def _serve(name: str, command: list[str], port: int, env: dict[str, str], cpus: Cpus,
           marker: str) -> Server:  # fmt: skip
    return Server(name, command, port, env, cpus).wait_for_output(marker)
