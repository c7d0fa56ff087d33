"""doctor's checks of Redis high availability: the master, replicas and Sentinels it sees (with Sentinel
enabled), and whether `redis_queue_wait_replicas` can be met by the replicas connected now."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis

from ..core.config import BenchSettings, SentinelSettings
from ..core.sentinel import survey
from .checks import Check

NO_REPLICA_HINT = (
    "Without a replica a failover has nothing to promote and a lost master loses the queues: add one "
    "(`replicaof MASTER_HOST PORT` in its redis.conf) and let the Sentinels find it."
)


def replication_checks(conn: redis.Redis, settings: BenchSettings) -> list[Check]:
    """The Sentinel and replica checks that apply to this bench (none for a single Redis without WAIT)."""
    checks = []
    if settings.sentinel is not None:
        checks.append(sentinel_check(settings.sentinel))
    if settings.sentinel is not None or settings.wait_replicas:
        checks.append(replicas_check(conn, settings))
    return checks


def sentinel_check(sentinel: SentinelSettings) -> Check:
    """What each Sentinel says the master is: a warning when one does not answer or they disagree, a failure
    when fewer than a majority answer (no failover could be authorised)."""
    reports = survey(sentinel)
    answering = [r for r in reports if r.error is None]
    masters = Counter(r.master for r in answering)
    parts = [
        f"{r.address}: {'does not answer (' + r.error + ')' if r.error else 'master ' + str(r.master)}" for r in reports
    ]
    majority = len(reports) // 2 + 1
    if len(answering) < majority:
        return Check(
            "redis-sentinels",
            False,
            f"only {len(answering)} of {len(reports)} Sentinels answer; " + "; ".join(parts),
            "Start the Sentinels, or fix redis_queue_sentinels: without a majority no failover can happen.",
        )
    problems = []
    if len(masters) > 1:
        problems.append("the Sentinels disagree on the master")
    if len(answering) < len(reports):
        problems.append(f"{len(reports) - len(answering)} Sentinel(s) do not answer")
    known = {r.other_sentinels for r in answering}
    if known != {len(reports) - 1}:
        problems.append(f"a Sentinel knows {min(known)} other(s), not {len(reports) - 1}")
    master = masters.most_common(1)[0][0]
    detail = f"master {master} of service {sentinel.service!r} ({'; '.join(parts)})"
    if problems:
        hint = "Check the Sentinels' logs and `SENTINEL MASTER name` on each; their config must monitor one master."
        return Check("redis-sentinels", True, f"{', '.join(problems)}: {detail}", hint, warning=True)
    return Check("redis-sentinels", True, f"{len(reports)} Sentinels agree: {detail}")


def replicas_check(conn: redis.Redis, settings: BenchSettings) -> Check:
    """The replicas connected to the master now, against `redis_queue_wait_replicas`."""
    info: dict[str, Any] = conn.info("replication")
    if info.get("role") != "master":
        return Check(
            "redis-replicas",
            False,
            f"Redis answers as a {info.get('role')}, not as the master",
            "Point redis_queue (or the Sentinel keys) at the master.",
        )
    replicas = [
        f"{value.get('ip')}:{value.get('port')} (lag {value.get('lag', '?')} s)"
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict)
    ]
    shown = ", ".join(replicas) or "none"
    wanted = settings.wait_replicas
    if len(replicas) < wanted:
        return Check(
            "redis-replicas",
            False,
            f"{len(replicas)} replica(s) connected ({shown}), but redis_queue_wait_replicas is {wanted}: every "
            "enqueue, slot claim and job outcome fails or waits",
            f"Bring the replicas back, or lower redis_queue_wait_replicas to {len(replicas)}.",
        )
    if not replicas:
        return Check("redis-replicas", True, "the master has no replica", NO_REPLICA_HINT, warning=True)
    waits = f"; writes wait for {wanted}" if wanted else "; writes do not wait for them (redis_queue_wait_replicas = 0)"
    return Check("redis-replicas", True, f"{len(replicas)} replica(s): {shown}{waits}")
