"""The scheduler's leader lease and heartbeats: one `schedule` process ticks, the others stand by."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

import redis

from ..core.keys import Keys

# Renewed at every tick boundary and after each tick, it outlives one tick by half a tick. A standby tries
# at every boundary and again the moment the lease runs out, then ticks at once: the slot of the boundary
# the dead leader missed fires at most half a tick late, and the standby leads from the next boundary on.
LEASE_TICKS = 1.5
HEARTBEAT_TICKS = 3  # a process silent for this many ticks no longer counts as alive

# KEYS: lease key. ARGV: token, TTL in ms. Returns 0 when the caller holds the lease afterwards, else the
# milliseconds the current holder's lease has left (a standby retries right when it runs out).
ACQUIRE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
return math.max(redis.call('PTTL', KEYS[1]), 1)
"""

# KEYS: lease key. ARGV: token. Deletes the lease only when the caller still holds it.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def process_name() -> str:
    """`host:pid`, naming this scheduler process in its token and heartbeat."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """A leader lease in Redis held under a random token: only the holder renews or releases it."""

    def __init__(self, conn: redis.Redis, keys: Keys, tick_interval_s: int) -> None:
        self.conn = conn
        self.key = keys.leader
        self.token = f"{process_name()}:{uuid.uuid4().hex[:12]}"
        self.tick_interval_s = tick_interval_s
        self.free_in_s = 0.0
        self._acquire = conn.register_script(ACQUIRE_LUA)
        self._release = conn.register_script(RELEASE_LUA)

    @property
    def ttl_ms(self) -> int:
        return int(self.tick_interval_s * LEASE_TICKS * 1000)

    def hold(self) -> bool:
        """Take the lease when it is free, renew it when it is ours; True when we lead afterwards.
        Otherwise `free_in_s` says when the holder's lease runs out unless renewed."""
        left_ms = int(self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))
        self.free_in_s = left_ms / 1000
        return left_ms == 0

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


@dataclass(frozen=True)
class Heartbeat:
    """What a scheduler process writes each tick; `tick_lag_s` is how late after its boundary it ticked."""

    at: str
    host: str
    pid: int
    leader: bool
    tick_interval_s: int
    tick_lag_s: float | None = None
    tick_duration_s: float | None = None
    fired: int | None = None
    skipped: int | None = None
    clock_offset_s: float | None = None  # how far this process's clock is ahead of Redis's (`at` is Redis's)


def write_heartbeat(conn: redis.Redis, keys: Keys, beat: Heartbeat) -> None:
    """Every process scores its name with the time of its beat in the bench's set of scheduler processes
    (dropping processes silent for HEARTBEAT_TICKS) and records its clock's offset; the leader also writes the
    bench's heartbeat key. `beat.at` is Redis's time, so no process's own clock decides who is silent."""
    beat_s = datetime.fromisoformat(beat.at).timestamp()
    name = f"{beat.host}:{beat.pid}"
    with conn.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.scheduler_processes, {name: beat_s})
        pipe.zremrangebyscore(keys.scheduler_processes, "-inf", f"({beat_s - _silent_after_s(beat.tick_interval_s)}")
        if beat.clock_offset_s is not None:
            pipe.set(
                keys.scheduler_clock(name), str(beat.clock_offset_s), ex=int(_silent_after_s(beat.tick_interval_s))
            )
        if beat.leader:
            pipe.set(keys.heartbeat, json.dumps(asdict(beat)))
        pipe.execute()


def drop_heartbeat(conn: redis.Redis, keys: Keys) -> None:
    with conn.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.scheduler_processes, process_name())
        pipe.delete(keys.scheduler_clock(process_name()))
        pipe.execute()


def clock_offsets(conn: redis.Redis, keys: Keys, now: datetime, tick_interval_s: int) -> dict[str, float]:
    """`host:pid` -> clock offset (s ahead of Redis) of each live process that recorded one; `now` is
    Redis's time."""
    since_s = now.timestamp() - _silent_after_s(tick_interval_s)
    live = [m.decode() for m in cast(list[bytes], conn.zrangebyscore(keys.scheduler_processes, since_s, "+inf"))]
    if not live:
        return {}
    offsets = cast(list[bytes | None], conn.mget([keys.scheduler_clock(name) for name in live]))
    return {name: float(raw) for name, raw in zip(live, offsets, strict=True) if raw is not None}


def live_processes(conn: redis.Redis, keys: Keys, now: datetime, tick_interval_s: int) -> int:
    """How many `schedule` processes beat within the last HEARTBEAT_TICKS ticks (one ZCOUNT)."""
    since_s = now.timestamp() - _silent_after_s(tick_interval_s)
    return int(conn.zcount(keys.scheduler_processes, since_s, "+inf"))


def _silent_after_s(tick_interval_s: int) -> float:
    return float(tick_interval_s * HEARTBEAT_TICKS)


def read_heartbeat(conn: redis.Redis, keys: Keys) -> dict[str, Any] | None:
    """The bench's (leader's) heartbeat, or None when no scheduler ever ticked."""
    raw = conn.get(keys.heartbeat)
    return json.loads(raw) if raw else None
