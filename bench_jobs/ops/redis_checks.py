"""doctor's checks of Redis itself: its version, its eviction policy, how near it is to its memory limit,
whether it keeps anything across a restart, and whether RQ's workers are suspended."""

from __future__ import annotations

import re
from typing import Any, cast

import redis
from rq.suspension import WORKERS_SUSPENDED

from ..core.connection import FULL_HINT
from .checks import Check

MIN_REDIS_VERSION = (5, 0)
MEMORY_WARN_RATIO = 0.80  # of maxmemory: a warning, before a full Redis refuses enqueues
MEMORY_FAIL_RATIO = 0.95
CONFIG_DISABLED = "unknown (CONFIG is disabled)"
PERSISTENCE_HINT = (
    "Set `appendonly yes` and `appendfsync everysec` in redis.conf (or CONFIG SET them, then CONFIG REWRITE): "
    "a restart then loses at most ~1 s of writes. `bench-jobs start` runs its own Redis that way."
)


def suspension_check(conn: redis.Redis) -> Check:
    """`rq suspend` (RQ's own tool) stops every worker on this Redis from taking jobs while they stay alive
    and look healthy: say so, since queued jobs then wait until `rq resume`."""
    suspended = bool(conn.exists(WORKERS_SUSPENDED))
    return Check(
        "workers-suspended",
        not suspended,
        "workers are suspended (`rq suspend`): they take no job" if suspended else "workers are not suspended",
        "Resume them: rq resume --url REDIS_URL (or DEL rq:suspended)." if suspended else "",
    )


def redis_checks(conn: redis.Redis) -> list[Check]:
    info: dict[str, Any] = conn.info("server")
    version = str(info.get("redis_version", "?"))
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    checks = [
        Check(
            "redis",
            numbers >= MIN_REDIS_VERSION,
            f"Redis {version} answers",
            "" if numbers >= MIN_REDIS_VERSION else "bench-jobs needs Redis 5 or newer.",
        )
    ]
    policy = config_value(conn, "maxmemory-policy") or CONFIG_DISABLED
    checks.append(
        Check(
            "redis-maxmemory-policy",
            policy in ("noeviction", CONFIG_DISABLED),
            f"maxmemory-policy is {policy}",
            ""
            if policy == "noeviction"
            else "Set `maxmemory-policy noeviction`: any other policy lets Redis "
            "silently delete queued jobs when memory runs out.",
        )
    )
    checks.append(memory_check(conn))
    checks.append(persistence_check(conn))
    return checks


def memory_check(conn: redis.Redis) -> Check:
    """Used memory against maxmemory: past MEMORY_WARN_RATIO a warning, past MEMORY_FAIL_RATIO a failure. A
    full Redis under noeviction refuses every enqueue and every write of the workers, which wait for room."""
    info: dict[str, Any] = conn.info("memory")
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    if limit <= 0:
        return Check("redis-memory", True, f"{_mb(used)} used, no maxmemory set")
    ratio = used / limit
    detail = f"{_mb(used)} used of maxmemory {_mb(limit)} ({ratio:.0%})"
    if ratio < MEMORY_WARN_RATIO:
        return Check("redis-memory", True, detail)
    hint = f"A full Redis refuses every enqueue. {FULL_HINT}"
    return Check("redis-memory", ratio < MEMORY_FAIL_RATIO, detail, hint, warning=True)


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1024 / 1024:.1f} MB"


def config_value(conn: redis.Redis, name: str) -> str | None:
    """CONFIG GET of one parameter (Redis before 7 takes one a call), or None where CONFIG is refused: renamed
    or disabled on a managed Redis, or denied by an ACL."""
    try:
        return cast(dict[str, str], conn.config_get(name)).get(name)
    except redis.ResponseError:
        return None


_FSYNC_LOSS = {
    "always": "a crash loses nothing; every write waits for the disk",
    "everysec": "a crash loses at most ~1 s of writes",
    "no": "a crash loses what the OS has not flushed yet, often ~30 s",
}


def persistence_check(conn: redis.Redis) -> Check:
    """Whether a restart of Redis keeps queued jobs: an append-only file, or at least RDB save points. Neither
    is a warning, not a failure: a development Redis may keep nothing on purpose, and a monitor pages on exit 1."""
    appendonly, save = config_value(conn, "appendonly"), config_value(conn, "save")
    if appendonly is None or save is None:
        try:
            aof_on = bool(conn.info("persistence").get("aof_enabled"))
        except redis.ResponseError:
            aof_on = False
        if aof_on:
            return Check("redis-persistence", True, "append-only file (CONFIG is disabled; from INFO)")
        return Check("redis-persistence", True, f"persistence {CONFIG_DISABLED}", PERSISTENCE_HINT)
    if appendonly == "yes":
        fsync = config_value(conn, "appendfsync") or "?"
        loss = _FSYNC_LOSS.get(fsync, "")
        return Check(
            "redis-persistence", True, f"append-only file, appendfsync {fsync}" + (f": {loss}" if loss else "")
        )
    if save.strip():
        return Check(
            "redis-persistence",
            True,
            f"RDB snapshots only (save {save}): a restart after a crash loses every write since the last snapshot",
            PERSISTENCE_HINT,
        )
    return Check(
        "redis-persistence",
        True,
        "no append-only file and no RDB save points: a restart of Redis loses every queued job",
        PERSISTENCE_HINT,
        warning=True,
    )
