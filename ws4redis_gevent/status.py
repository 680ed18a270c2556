"""Live status from Redis: ``ws4redis-status`` (any WSGI app) and ``manage.py ws4redis_status``.

What every process and host shares is in Redis, so the status is read there:

- the channels subscribed now, with their subscriber counts (``PUBSUB NUMSUB``; on a Redis
  Cluster ``PUBSUB SHARDNUMSUB`` on every primary). Each worker process holds one pub/sub
  connection (its hub), so a count is the number of *processes* receiving the channel, not of
  websockets (the ``ws4redis_websockets_open`` metric counts those);
- per facility, the stored messages (the channel's key, and its ``:@published`` stamp) and the
  history streams (``:@history``, ``:@epoch``);
- the health of the connection: PING round trip and the server's version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .keys import AUDIENCES, EPOCH_SUFFIX, HISTORY_SUFFIX, STAMP_SUFFIX, unquote
from .redis_store import redis_client
from .settings import Settings, load


@dataclass
class FacilityKeys:
    """The keys Redis holds for one facility."""

    stored: int = 0  # channels with a stored (persisted) message
    history: int = 0  # channels with a history stream


@dataclass
class Status:
    """What ``collect`` found; ``ok`` is False (with ``error``) when Redis did not answer."""

    ok: bool
    error: str | None = None
    ping_ms: float | None = None
    redis_version: str | None = None
    channels: dict[str, int] = field(default_factory=dict)
    facilities: dict[str, FacilityKeys] = field(default_factory=dict)


def collect(settings: Settings | None = None, client: Any = None) -> Status:
    """Read the status from Redis (with ``settings``' connection and prefix, or ``client``)."""
    settings = settings or load()
    try:
        client = client or redis_client(settings.connection)
        started = time.perf_counter()
        client.ping()
        ping_ms = round((time.perf_counter() - started) * 1000, 3)
        status = Status(ok=True, ping_ms=ping_ms, redis_version=_version(client))
        prefix = f"{settings.prefix}:" if settings.prefix else ""
        status.channels = _channels(client, prefix)
        status.facilities = _facilities(client, prefix)
    except (redis.RedisError, OSError) as exc:
        return Status(ok=False, error=f"{type(exc).__name__}: {exc}")
    return status


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_primaries")


def _version(client: Any) -> str | None:
    info = client.info("server")
    if "redis_version" not in info:  # a cluster may answer per node
        info = next((v for v in info.values() if isinstance(v, dict)), {})
    return str(info["redis_version"]) if "redis_version" in info else None


def _facility(name: str, prefix: str) -> str | None:
    """The facility of channel ``name`` (see keys.py), None when it is no channel of ours."""
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split(":")
    if parts[0] not in AUDIENCES or len(parts) != (2 if parts[0] == "broadcast" else 3):
        return None
    return unquote(parts[-1])


def _is_channel(name: str, prefix: str) -> bool:
    return _facility(name, prefix) is not None


def _channels(client: Any, prefix: str) -> dict[str, int]:
    pattern = f"{prefix}*"
    if _is_cluster(client):
        counts: dict[str, int] = {}
        for node in client.get_primaries():
            conn = client.get_redis_connection(node)
            names = [_text(n) for n in conn.execute_command("PUBSUB SHARDCHANNELS", pattern)]
            names = [n for n in names if _is_channel(n, prefix)]
            if names:
                reply = conn.execute_command("PUBSUB SHARDNUMSUB", *names)
                for name, count in _pairs(reply):
                    counts[_text(name)] = counts.get(_text(name), 0) + int(count)
        return dict(sorted(counts.items()))
    names = [
        n for n in (_text(c) for c in client.pubsub_channels(pattern)) if _is_channel(n, prefix)
    ]
    if not names:
        return {}
    return {_text(name): int(count) for name, count in sorted(client.pubsub_numsub(*names))}


def _pairs(reply: list[Any]) -> list[tuple[Any, Any]]:
    # redis-py parses some NUMSUB replies into pairs, and leaves others flat.
    if reply and isinstance(reply[0], (tuple, list)):
        return [tuple(pair) for pair in reply]  # type: ignore[misc]
    return list(zip(reply[::2], reply[1::2], strict=True))


def _facilities(client: Any, prefix: str) -> dict[str, FacilityKeys]:
    found: dict[str, FacilityKeys] = {}
    for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        key = _text(raw)
        if key.endswith((STAMP_SUFFIX, EPOCH_SUFFIX)):
            continue  # companions of a stored message or a history, counted with them
        is_history = key.endswith(HISTORY_SUFFIX)
        channel = key[: -len(HISTORY_SUFFIX)] if is_history else key
        facility = _facility(channel, prefix)
        if facility is None:
            continue
        keys = found.setdefault(facility, FacilityKeys())
        if is_history:
            keys.history += 1
        else:
            keys.stored += 1
    return dict(sorted(found.items()))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def format_status(status: Status) -> str:
    """The status as text for a terminal."""
    if not status.ok:
        return f"Redis: UNREACHABLE ({status.error})\n"
    lines = [f"Redis: ok (PING {status.ping_ms} ms, Redis {status.redis_version})", ""]
    lines.append("Channels (subscribers: worker processes receiving the channel)")
    lines += [f"  {count:>6}  {name}" for name, count in status.channels.items()] or ["  none"]
    lines += ["", "Facilities (channels with a stored message / with history)"]
    lines += [
        f"  {keys.stored:>6} / {keys.history:<6}  {facility}"
        for facility, keys in status.facilities.items()
    ] or ["  none"]
    return "\n".join(lines) + "\n"


def as_json(status: Status) -> str:
    """The status as JSON (for scripts and monitoring)."""
    return json.dumps(asdict(status), indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    """``ws4redis-status [--connection URL] [--prefix P] [--json]``; exits 1 when Redis is down.

    Without ``--connection``, the settings of the process apply (Django's, when
    DJANGO_SETTINGS_MODULE is set and Django configured; else the defaults).
    """
    parser = argparse.ArgumentParser(prog="ws4redis-status", description=__doc__.splitlines()[0])
    parser.add_argument("--connection", help="a Redis URL (redis://, redis+cluster://...)")
    parser.add_argument("--prefix", help="WS4REDIS_PREFIX")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.connection:
        options["connection"] = args.connection
    if args.prefix:
        options["prefix"] = args.prefix
    status = collect(load(**options))
    sys.stdout.write(as_json(status) + "\n" if args.json else format_status(status))
    return 0 if status.ok else 1
