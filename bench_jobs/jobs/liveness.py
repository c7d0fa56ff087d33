"""Whether a bench-jobs worker is alive: one answer for show-queue, doctor, orphan recovery and the scheduler.

A worker keeps `bench_jobs:<bench>:alive:<name>` (15 s TTL) holding "<host>|<machine>|<pid>", and records in RQ's
hash of the worker (kept fresh by its heartbeats) the stamp of the app code it loaded (LOADED_CODE_FIELD). The key must
exist; and when the worker ran on this machine (same boot and pid namespace, not merely the same hostname,
which containers share) its process must exist too, so a SIGKILLed worker counts as dead at once.

One exception: alive keys expire while Redis is down, so for RESTART_GRACE_S after Redis starts, a job that
started before it did is not judged by a missing key (its worker may still run it and re-mark itself). The
same rule exists in Python (orphaned) and in Lua (STARTED_BEFORE_RESTART_LUA)
for the scripts that decide atomically.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import redis

from ..core.keys import Keys


@functools.cache
def machine_id() -> str:
    """This boot of this machine and its pid namespace: equal ids mean pids can be checked with kill(0)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"


def alive_value(pid: int) -> str:
    return f"{socket.gethostname()}|{machine_id()}|{pid}"


def worker_is_alive(value: bytes | str | None) -> bool:
    """Whether the worker whose alive key holds `value` lives (None: the key expired or never existed)."""
    if not value:
        return False
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split("|")
    if len(parts) != 3 or not parts[1] or parts[1] != machine_id() or not parts[2].isdigit():
        return True
    return pid_lives(int(parts[2]))


def pid_lives(pid: int) -> bool:
    """Whether process `pid` of this machine runs: it exists and is not a zombie (a killed worker whose parent
    has not reaped it yet, or whose container init never does, still answers kill(0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


K = TypeVar("K")

# A field of RQ's worker hash (`rq:worker:<name>`), written at the worker's birth: the newest modification time
# in ns of the app files the worker imported as it started (core.app_files), which `doctor` compares with the
# files on disk.
LOADED_CODE_FIELD = "bench_jobs_code_mtime_ns"

# A live worker re-marks itself within this long of Redis answering again: the alive key's TTL (15 s), its
# reconnect backoff (at most 10 s) and its heartbeat interval while a job runs (5 s).
RESTART_GRACE_S = 30


def booted_within_grace(conn: redis.Redis) -> float | None:
    """When Redis started (epoch s) if under RESTART_GRACE_S ago, else None (also when INFO is refused)."""
    try:
        with conn.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.time()
            info, (seconds, micros) = pipe.execute()
    except redis.exceptions.ResponseError:
        return None
    uptime = int(info.get("uptime_in_seconds", RESTART_GRACE_S))
    # Uptime is whole seconds, so this is up to a second after the real start: a job started in that second
    # counts as started before, and waits (the cautious side).
    return seconds + micros / 1e6 - uptime if uptime < RESTART_GRACE_S else None


def started_before(booted_at: float | None, started_at: datetime | bytes | str | None) -> bool:
    """Whether a job that started at `started_at` (RQ's UTC ISO text or a datetime; unknown: judged by its
    key) did so before a Redis that booted within the grace (`booted_at` from booted_within_grace)."""
    if booted_at is None or not started_at:
        return False
    if not isinstance(started_at, datetime):
        text = started_at.decode() if isinstance(started_at, bytes) else started_at
        started_at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return started_at.timestamp() < booted_at


def orphaned(conn: redis.Redis, started_at: Mapping[K, datetime | bytes | str | None]) -> set[K]:
    """Of jobs whose worker's alive key is gone (each key -> when its job started), those to judge orphaned:
    all of them, except, within the grace after a Redis start, the ones that started before it."""
    booted_at = booted_within_grace(conn) if started_at else None
    return {key for key, at in started_at.items() if not started_before(booted_at, at)}


# Lua: started_before_restart(job_key), the same rule. RQ writes started_at as YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC);
# epoch_of converts it with the days-from-civil algorithm, since Redis' Lua has no date functions.
STARTED_BEFORE_RESTART_LUA = """
local function epoch_of(iso)
  local y, m, d, hh, mm, ss = string.match(iso, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)')
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return (era * 146097 + doe - 719468) * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end
local function started_before_restart(job_key)
  local uptime = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
  if not uptime or uptime >= GRACE then return false end
  local started = redis.call('HGET', job_key, 'started_at')
  local at = started and epoch_of(started)
  if not at then return false end
  return at < tonumber(redis.call('TIME')[1]) - uptime
end
""".replace("GRACE", str(RESTART_GRACE_S))


def live_workers(conn: redis.Redis, keys: Keys, worker_names: Collection[str]) -> set[str]:
    """The names among `worker_names` that are alive (one round trip)."""
    names = sorted(set(worker_names))
    if not names:
        return set()
    values = cast(list[Any], conn.mget([keys.worker_alive(name) for name in names]))
    return {name for name, value in zip(names, values, strict=True) if worker_is_alive(value)}
