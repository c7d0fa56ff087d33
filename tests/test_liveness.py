"""Liveness after a Redis restart: the Python and Lua halves of one rule (liveness.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import redis
from rq.utils import utcformat

from bench_jobs.jobs.liveness import STARTED_BEFORE_RESTART_LUA, started_before


def test_lua_reads_rqs_started_at_as_python_does(redis_client: redis.Redis) -> None:
    """The scripts convert RQ's started_at by hand (Redis' Lua has no dates): leap days, centuries, 1970."""
    rng = random.Random(7)
    start = datetime(1970, 1, 1, tzinfo=timezone.utc)
    moments = [
        start,
        datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(2024, 2, 29, 12, 0, tzinfo=timezone.utc),
        datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc),
        datetime(2100, 3, 1, 0, 0, 1, tzinfo=timezone.utc),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    ] + [start + timedelta(seconds=rng.randrange(0, 130 * 365 * 86400)) for _ in range(300)]
    texts = [utcformat(moment) for moment in moments]
    script = (
        STARTED_BEFORE_RESTART_LUA + "local out = {} for i, t in ipairs(ARGV) do out[i] = epoch_of(t) end return out"
    )
    assert redis_client.eval(script, 0, *texts) == [int(moment.timestamp()) for moment in moments]


def test_only_a_job_known_to_have_started_before_a_recent_boot_waits() -> None:
    booted = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc).timestamp()
    assert started_before(booted, utcformat(datetime(2026, 11, 29, 9, 59, 59, tzinfo=timezone.utc)))
    assert not started_before(booted, b"2026-11-29T10:00:01.000000Z")
    assert not started_before(booted, None), "no started_at: judged by the alive key, as before"
    assert not started_before(None, b"2026-11-29T09:00:00.000000Z"), "Redis up for longer than the grace"
