"""Presence: who is on a channel, across processes and hosts, with no ghosts after a crash.

Opt-in per facility: ``WS4REDIS_PRESENCE = {"chat": {"ttl": 30, "events_interval": 1.0}}``,
``{"*": {}}`` or ``"*"`` (every facility, defaults). Every websocket subscribed to a channel of
such a facility is *present* there: as its user name, or anonymously (a digest of its session
key, never the key), with a connection id of its own.

In Redis, per channel, two keys in one cluster slot (keys.presence_keys): a sorted set of
connections (``ID TOKEN``, scored by when each expires) and a hash of users (``TOKEN`` ->
connection count; several tabs of one user count once). One Lua script does every change, so
the counts and the sorted set never disagree:

- a websocket's handshake adds its connection (expiring ``ttl`` seconds later);
- the process's timer (keepalive.Keepalive: one greenlet for every websocket's timers) refreshes
  the connections of the process every ``ttl / 3`` seconds, one script per channel, whatever
  the number of websockets;
- a clean close removes the connection at once (within REMOVE_AFTER, 50 ms, which gathers the
  closes of a mass disconnect: one greenlet per process sends them);
- a process that dies (SIGKILL) stops refreshing: its connections expire after ``ttl`` at most;
  queries ignore expired ones, and the next script run on the channel removes them.

Join and leave events are user-level (first connection in, last one out), decided in Redis;
a changed count of connections (a second tab) is an ``updated`` event.
Each process collects them per channel for ``events_interval`` seconds and publishes one
presence envelope (envelope.wrap_presence) per channel and interval on the channel's events
channel (keys.presence_events_channel), keeping the latest change of each user: a mass
reconnect of 1,000 websockets is one message per channel, process and interval, naming each
user once. Each change carries a version (Redis time in microseconds, always increasing per
channel): clients apply a change only if it is newer than what they know, so events from
several processes, arriving in any order, and the list they started from, agree.

Websockets that ask with ``?presence`` receive the list of users of each presence channel they
subscribe to, then its events, as ``!presence LABEL\\nJSON`` text frames (outgoing.PresenceFrame),
beside messages tagged ``LABEL POSITION\\nPAYLOAD`` as in recovery mode. Websockets that did not
ask never subscribe to the events channels and never see either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import redis

from .channels import Identity
from .envelope import wrap_presence
from .keys import channel_name, loggable, presence_events_channel, presence_keys
from .outgoing import PresenceFrame
from .redis_store import _connection_key, _shared_client
from .settings import Settings, load

logger = logging.getLogger("ws4redis_gevent.presence")

CHUNK = 1000  # connections per script run: Redis stays responsive while it refreshes
IDLE_TICK = 1.0
REMOVE_AFTER = 0.05  # seconds: closes within it are removed by one script run per channel

# KEYS: connections (sorted set), users (hash)
# ARGV: ttl, how many connections to add, snapshot (0: none, 1: users, 2: users and
#       connections), the connections to add, then those to remove.
# Returns {changes ("KV COUNT TOKEN", K: + joined, - left, ~ count changed; V: version),
#          users (flat HGETALL), connections}.
_UPDATE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local changes = {}
local function change(member, delta)
    local token = string.sub(member, 18)
    local n = redis.call('HINCRBY', KEYS[2], token, delta)
    local kind = '~'  -- the user's connection count changed
    if n <= 0 then
        redis.call('HDEL', KEYS[2], token)
        kind, n = '-', 0  -- the last connection left
    elseif delta > 0 and n == 1 then
        kind = '+'  -- the first connection came
    end
    local v = math.max(micros, (tonumber(redis.call('HGET', KEYS[2], '@v')) or 0) + 1)
    local version = string.format('%.0f', v)
    redis.call('HSET', KEYS[2], '@v', version)
    changes[#changes + 1] = kind .. version .. ' ' .. n .. ' ' .. token
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)) do
    redis.call('ZREM', KEYS[1], member)
    change(member, -1)
end
local added = tonumber(ARGV[2])
for i = 4, 3 + added do
    if redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) == 1 then change(ARGV[i], 1) end
end
for i = 4 + added, #ARGV do
    if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then change(ARGV[i], -1) end
end
-- The keys outlive every connection in them; a channel nobody refreshes disappears.
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
redis.call('EXPIRE', KEYS[2], math.ceil(ttl) + 1)
local result = {changes, {}, {}}
if ARGV[3] ~= '0' then result[2] = redis.call('HGETALL', KEYS[2]) end
if ARGV[3] == '2' then result[3] = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf') end
return result
"""


@dataclass(frozen=True)
class PresenceConfig:
    """Presence of a facility: connections expire ``ttl`` seconds after their last refresh;
    join/leave events are collected for ``events_interval`` seconds."""

    ttl: float = 30.0
    events_interval: float = 1.0

    @property
    def refresh_interval(self) -> float:
        return self.ttl / 3


def presence_config(setting: Any, facility: str | None) -> PresenceConfig | None:
    """The presence of ``facility`` from WS4REDIS_PRESENCE, or None when it has none."""
    if not setting or facility is None:
        return None
    if setting == "*":
        return PresenceConfig()
    entry = setting.get(facility, setting.get("*"))
    if entry is None:
        return None
    return PresenceConfig(**entry)


@dataclass(frozen=True)
class Present:
    """One user present on a channel: several tabs (connections) count once."""

    name: str
    anonymous: bool
    connections: int
    connection_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "anonymous": self.anonymous, "connections": self.connections}


def presence_token(identity: Identity, connection_id: str) -> str:
    """Who a connection is, as presence keeps it: ``u:NAME``, or ``a:DIGEST`` anonymously
    (of the session key, so that one visitor's tabs count once, without showing the key)."""
    if identity.user:
        return "u:" + identity.user
    secret = identity.session_key or connection_id
    return "a:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def _user(token: str) -> tuple[str, bool]:
    return token[2:], token.startswith("a:")


_KINDS = {"+": "joined", "-": "left", "~": "updated"}


def _change_json(change: str) -> tuple[str, dict[str, Any]]:
    head, count, token = change.split(" ", 2)
    name, anonymous = _user(token)
    user = {"name": name, "anonymous": anonymous, "connections": int(count), "v": int(head[1:])}
    return _KINDS[head[0]], user


def _token_of(change: str) -> str:
    return change.split(" ", 2)[2]


def merge_change(earlier: str | None, later: str) -> str:
    """The change that stands for both: the later one, except that a user who joined and then
    opened or closed tabs within one interval still counts as joined (with the later count)."""
    if earlier is not None and earlier[0] == "+" and later[0] == "~":
        return "+" + later[1:]
    return later


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _users(flat: Sequence[Any]) -> tuple[list[Present], int]:
    # HGETALL, flat: token, count, token, count... and "@v" (the version).
    users, version = [], 0
    for token, count in zip(flat[::2], flat[1::2], strict=True):
        token = _text(token)
        if token == "@v":
            version = int(count)
        elif int(count) > 0:
            users.append(Present(*_user(token), int(count)))
    return sorted(users, key=lambda p: (p.anonymous, p.name)), version


def snapshot_json(flat: Sequence[Any]) -> bytes:
    """The list of users sent to a websocket that asked for presence."""
    users, version = _users(flat)
    return json.dumps({"users": [u.as_json() for u in users], "v": version}).encode()


def events_json(changes: dict[str, str]) -> bytes:
    """One presence event: the latest change of each user,
    ``{"joined": [], "left": [], "updated": []}`` (updated: a new count of connections)."""
    event: dict[str, list[dict[str, Any]]] = {"joined": [], "left": [], "updated": []}
    for change in changes.values():
        kind, user = _change_json(change)
        event[kind].append(user)
    return json.dumps(event).encode()


_UPDATE_SHA = hashlib.sha1(_UPDATE_LUA.encode()).hexdigest()


def _run_script(client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
    # EVALSHA: the script's 1.7 KB goes (as EVAL, which caches it) only to a Redis that does
    # not know it yet (first use, a restart, a new cluster shard).
    try:
        return client.evalsha(_UPDATE_SHA, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(_UPDATE_LUA, len(keys), *keys, *args)


class _Update:
    """One run of the update script on a channel."""

    def __init__(self, client: redis.Redis, prefix: str | None, channel: str, ttl: float):
        self.keys = presence_keys(prefix, channel)
        self.client = client
        self.ttl = ttl

    def run(
        self, add: Sequence[str] = (), remove: Sequence[str] = (), snapshot: int = 0
    ) -> tuple[list[str], list[Any], list[Any]]:
        args: list[Any] = [self.ttl, len(add), snapshot, *add, *remove]
        changes, users, members = _run_script(self.client, self.keys, args)
        return [_text(c) for c in changes], users, members


@dataclass
class _Local:
    """The connections of this process on one channel."""

    config: PresenceConfig
    members: set[str]
    next_refresh: float


class PresenceTracker:
    """This process's presence: its connections, refreshed by the process's timer.

    Built once per process and Redis connection (``tracker``); ``tick`` is called by
    keepalive.Keepalive and never blocks: Redis work runs in one short-lived greenlet at a time.
    """

    finished = False  # a timer of the process's Keepalive for as long as the process lives

    def __init__(self, client: redis.Redis, prefix: str | None) -> None:
        self._client = client
        self._prefix = prefix
        self._local: dict[str, _Local] = {}
        self._removals: dict[str, tuple[PresenceConfig, list[str]]] = {}
        self._changes: dict[str, dict[str, str]] = {}
        self._intervals: dict[str, float] = {}  # events_interval of the channels with changes
        self._due: set[str] = set()  # channels to refresh
        # One greenlet at a time sends removals and refreshes, in order: a refresh running
        # beside a removal could otherwise add back a connection that has just been removed.
        self._maintainer: gevent.Greenlet | None = None
        self._publisher: gevent.Greenlet | None = None
        self._scheduled = False
        self.published = 0  # event messages published (one per channel and interval)

    def enter(
        self, channels: Sequence[str], member: str, config: PresenceConfig, snapshot: bool
    ) -> dict[str, bytes]:
        """Make ``member`` present on ``channels`` (blocks: during the handshake).

        Returns the list of users of each channel (JSON) when ``snapshot`` is asked for. What
        is in Redis never fails a handshake: a channel whose presence keys hold something else
        (a key of another type) is logged and left without presence.

        Raises:
            redis.RedisError: Redis could not be reached.
        """
        self._schedule()
        lists = {}
        for channel in channels:
            update = _Update(self._client, self._prefix, channel, config.ttl)
            try:
                changes, users, _ = update.run(add=[member], snapshot=1 if snapshot else 0)
            except redis.ResponseError as exc:
                if not str(exc).startswith("WRONGTYPE"):
                    raise  # e.g. READONLY during a failover: the handshake fails, with 503
                logger.warning("no presence on %r: %s", loggable(channel), exc)
                continue
            local = self._local.get(channel)
            if local is None:
                due = time.monotonic() + config.refresh_interval
                local = self._local[channel] = _Local(config, set(), due)
            local.members.add(member)
            self._note(channel, changes, config)
            if snapshot:
                lists[channel] = snapshot_json(users)
        return lists

    def leave(self, channels: Iterable[str], member: str) -> None:
        """Remove ``member`` from ``channels`` now; never blocks (the end of a websocket may
        run in the event loop): one greenlet of the process sends the removals."""
        for channel in channels:
            local = self._local.get(channel)
            if local is None or member not in local.members:
                continue
            local.members.discard(member)
            self._removals.setdefault(channel, (local.config, []))[1].append(member)
        if self._removals:
            self._wake()

    def _wake(self) -> None:
        if self._maintainer is None:
            # A moment's wait gathers the closes of a mass disconnect into few script runs.
            self._maintainer = gevent.spawn_later(REMOVE_AFTER, self._maintain)

    def _maintain(self) -> None:
        try:
            while self._removals or self._due:
                if self._removals:
                    removals, self._removals = self._removals, {}
                    for channel, (config, members) in removals.items():
                        self._run(channel, config, remove=members)
                else:
                    self._refresh([self._due.pop()])
        finally:
            self._maintainer = None

    def _run(
        self,
        channel: str,
        config: PresenceConfig,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        local = self._local.get(channel)
        update = _Update(self._client, self._prefix, channel, config.ttl)
        try:
            for start in range(0, max(len(add), len(remove)), CHUNK):
                adding = add[start : start + CHUNK]
                if local is not None and adding:  # not those that left meanwhile
                    adding = [member for member in adding if member in local.members]
                changes, _, _ = update.run(adding, remove[start : start + CHUNK])
                self._note(channel, changes, config)
        except (redis.RedisError, OSError) as exc:
            # The connections expire by themselves after ttl: no ghost outlives that.
            logger.warning("cannot update the presence of %r: %s", loggable(channel), exc)
        if local is not None and not local.members:
            del self._local[channel]

    # -- the timer ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled:
            from .keepalive import schedule_timer

            self._scheduled = True
            schedule_timer(self)

    def tick(self, now: float) -> float:
        """Refresh the channels that are due (in a greenlet); returns when to be called next."""
        for channel, local in self._local.items():
            if local.next_refresh <= now:
                local.next_refresh = now + local.config.refresh_interval
                self._due.add(channel)
        if self._due:
            self._wake()
        # At least every IDLE_TICK: a channel entered meanwhile may be due sooner.
        return min([now + IDLE_TICK, *(local.next_refresh for local in self._local.values())])

    def _refresh(self, channels: list[str]) -> None:
        for channel in channels:
            local = self._local.get(channel)
            if local is not None:
                self._run(channel, local.config, add=sorted(local.members))

    # -- events ------------------------------------------------------------------------------

    def _note(self, channel: str, changes: list[str], config: PresenceConfig) -> None:
        if not changes:
            return
        self._intervals[channel] = config.events_interval
        latest = self._changes.setdefault(channel, {})
        for change in changes:
            token = _token_of(change)
            latest[token] = merge_change(latest.get(token), change)
        if self._publisher is None:
            self._publisher = gevent.spawn_later(config.events_interval, self._publish)

    def _publish(self) -> None:
        # Once per interval: changes noted while this publishes wait for the next one.
        changes, self._changes = self._changes, {}
        try:
            for channel, latest in changes.items():
                publish_events(self._client, channel, latest)
                self.published += 1
        except (redis.RedisError, OSError) as exc:
            logger.warning("cannot publish presence events: %s", exc)
        finally:
            self._publisher = None
            self._intervals = {ch: self._intervals[ch] for ch in self._changes}
            if self._changes:
                interval = min(self._intervals.values(), default=1.0)
                self._publisher = gevent.spawn_later(interval, self._publish)

    def local_connections(self) -> int:
        """How many (connection, channel) pairs this process keeps present."""
        return sum(len(local.members) for local in self._local.values())


def publish_events(client: redis.Redis, channel: str, latest: dict[str, str]) -> None:
    """Publish the latest change of each user of ``channel`` as one presence envelope."""
    client.publish(presence_events_channel(channel), wrap_presence(events_json(latest)))


_trackers: dict[tuple[int, str], PresenceTracker] = {}


def tracker(client: redis.Redis, settings: Settings) -> PresenceTracker:
    """The process's tracker for these settings' Redis connection (a new one after a fork)."""
    key = (os.getpid(), _connection_key(settings.connection) + "|" + str(settings.prefix))
    found = _trackers.get(key)
    if found is None:
        found = _trackers.setdefault(key, PresenceTracker(client, settings.prefix))
    return found


def new_connection_id() -> str:
    """16 hex digits naming one websocket in presence."""
    return secrets.token_hex(8)


def get_presence(
    facility: str,
    audience: str = "broadcast",
    name: str | None = None,
    settings: Settings | None = None,
    connection: redis.Redis | None = None,
) -> list[Present]:
    """Who is present on a channel now, across every process and host.

    Args:
        facility: the facility (the websocket URL's last part), with presence enabled in
            WS4REDIS_PRESENCE.
        audience: ``"broadcast"`` (default), ``"user"``, ``"group"`` or ``"session"``.
        name: the user, group or session key of the channel (not for broadcast).
        settings: defaults to the process's settings (Django's, or configure()'s).
        connection: a Redis client; defaults to the process's shared one.

    Returns:
        One ``Present`` per user (several tabs count once: see ``connections``), users first,
        then anonymous visitors, each sorted by name.

    Raises:
        ValueError: presence is not enabled for ``facility``.
        redis.RedisError: Redis could not be reached.
    """
    settings = settings or load()
    config = presence_config(settings.presence, facility)
    if config is None:
        raise ValueError(f"presence is not enabled for facility {facility!r} (WS4REDIS_PRESENCE)")
    client = connection or _shared_client(settings.connection)
    channel = channel_name(settings.prefix, audience, facility, name)
    changes, flat, members = _Update(client, settings.prefix, channel, config.ttl).run(snapshot=2)
    if changes:  # connections of a dead process, removed now: their leave events go out
        publish_events(client, channel, {_token_of(c): c for c in changes})
    users, _ = _users(flat)
    ids: dict[str, list[str]] = {}
    for member in members:
        connection_id, _, token = _text(member).partition(" ")
        ids.setdefault(token, []).append(connection_id)
    return [
        Present(u.name, u.anonymous, u.connections, tuple(sorted(ids.get(_token(u), ()))))
        for u in users
    ]


def _token(user: Present) -> str:
    return ("a:" if user.anonymous else "u:") + user.name


def presence_frames(lists: dict[str, bytes]) -> list[PresenceFrame]:
    """The frames carrying each channel's list of users to a websocket that asked."""
    return [PresenceFrame(event, channel.encode()) for channel, event in lists.items()]
