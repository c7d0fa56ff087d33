"""Redis's clock as the scheduler's: slots, heartbeats and their clean-up read TIME from Redis, so that a
`schedule` process whose own clock runs ahead neither fires slots early nor drops the other processes from
the live set. How far a process's clock is off from Redis's is recorded for `doctor`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis

CLOCK_SKEW_LIMIT_S = 2.0  # doctor reports a process whose clock is further off than this from Redis's


@dataclass(frozen=True)
class RedisClock:
    """Redis's time, and how far this process's clock is ahead of it (negative: behind)."""

    now: datetime
    offset_s: float

    def local_s(self, redis_s: float) -> float:
        """The local epoch time at which Redis's clock reads `redis_s`."""
        return redis_s + self.offset_s


def read_clock(conn: redis.Redis) -> RedisClock:
    """Redis's TIME, and this process's offset from it measured at the middle of the round trip."""
    before_s = time.time()
    seconds, micros = conn.time()
    after_s = time.time()
    redis_s = seconds + micros / 1_000_000
    return RedisClock(datetime.fromtimestamp(redis_s, timezone.utc), round((before_s + after_s) / 2 - redis_s, 3))


def skew_problem(name: str, offset_s: float) -> str | None:
    """What to report about a process whose clock is `offset_s` off from Redis's, if it is too far off."""
    if abs(offset_s) <= CLOCK_SKEW_LIMIT_S:
        return None
    return f"{name}'s clock is {abs(offset_s):.1f} s {'ahead of' if offset_s > 0 else 'behind'} Redis's"
