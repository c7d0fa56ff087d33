"""Counters of finished and failed jobs per minute, by queue and by site and queue, for the dashboard's charts.

A job's outcome adds to one hash per minute (`Keys.throughput`) in the same pipeline that writes the job's
status (BenchJob.set_status), so a count is never ahead of or behind the outcome it counts. RQ's registries
only keep the jobs still held; these counters keep how many there were, for KEEP_S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from ..core.connection import lua
from ..core.keys import Keys

BUCKET_S = 60  # one hash per minute
KEEP_S = 3 * 86400 + 3600  # a minute's hash lives 3 days (the longest span a chart shows) and an hour
OUTCOMES = ("finished", "failed")
# span name -> (window, bar width), both in seconds: what a chart may show.
SPANS: dict[str, tuple[int, int]] = {"1h": (3600, 60), "24h": (86400, 1800), "3d": (3 * 86400, 3600)}
DEFAULT_SPAN = "1h"
# Minutes one script call reads at most (~2 ms of Redis's time with every counter set, 6 fields): a script
# holds Redis, so a 3-day chart of 4,320 minutes is 12 calls that workers' commands can pass between.
CALL_MINUTES = 360

# The counts of some fields over minute hashes, summed per bar inside Redis: a chart of 72 bars reads 4,320
# minutes, and a page gets back only bars x fields numbers (no reply per minute to parse).
# KEYS: the minute hashes, oldest first, a whole number of bars. ARGV: minutes per bar, then the fields.
# Returns the sums bar by bar, field by field within a bar.
_SUM_BARS_LUA = """
local per_bar = tonumber(ARGV[1])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local sums = {}
for i = 1, (#KEYS / per_bar) * #fields do sums[i] = 0 end
for k, key in ipairs(KEYS) do
  local base = math.floor((k - 1) / per_bar) * #fields
  local values = redis.call('HMGET', key, unpack(fields))
  for f = 1, #fields do
    local value = tonumber(values[f])
    if value then sums[base + f] = sums[base + f] + value end
  end
end
return sums
"""


def count_outcome(pipe: Any, bench_id: str, site: str | None, queue: str, ok: bool, now_s: float) -> None:
    """Queue on `pipe` (a pipeline, or a connection) the HINCRBYs counting one finished (`ok`) or failed job of
    `queue` (and of `site`, when the job is a site's) in the minute of `now_s`, and the hash's expiry."""
    key = Keys(bench_id).throughput(int(now_s) // BUCKET_S * BUCKET_S)
    outcome = OUTCOMES[0] if ok else OUTCOMES[1]
    pipe.hincrby(key, f"{outcome}\t{queue}", 1)
    if site:
        pipe.hincrby(key, f"{outcome}\t{queue}\t{site}", 1)
    pipe.expire(key, KEEP_S)


@dataclass(frozen=True)
class Bar:
    """The jobs that ended in one bar of a chart, from `start` (UTC) for the chart's bar width."""

    start: datetime
    finished: int
    failed: int


@dataclass(frozen=True)
class Throughput:
    """Finished and failed jobs over a span, oldest bar first: all the queues read, and each queue alone."""

    span: str
    bar_s: int
    bars: list[Bar]
    per_queue: dict[str, list[Bar]]

    @property
    def finished(self) -> int:
        return sum(bar.finished for bar in self.bars)

    @property
    def failed(self) -> int:
        return sum(bar.failed for bar in self.bars)


def read_throughput(
    conn: redis.Redis,
    bench_id: str,
    queues: Sequence[str],
    now: datetime,
    span: str = DEFAULT_SPAN,
    site: str | None = None,
) -> Throughput:
    """The counts of `queues` (of `site` alone when given) over `span` (a key of SPANS) up to `now`, summed per
    bar inside Redis by a script, CALL_MINUTES minutes a call (1h: one call; 3d: 12)."""
    window_s, bar_s = SPANS[span]
    keys = Keys(bench_id)
    last_bar = int(now.timestamp()) // bar_s * bar_s
    first_bar = last_bar - window_s + bar_s
    minutes = range(first_bar, last_bar + bar_s, BUCKET_S)
    suffix = f"\t{site}" if site else ""
    fields = [f"{outcome}\t{queue}{suffix}" for queue in queues for outcome in OUTCOMES]
    bar_count = window_s // bar_s
    counts = {queue: [[0, 0] for _ in range(bar_count)] for queue in queues}
    per_bar = bar_s // BUCKET_S
    per_call = max(1, CALL_MINUTES // per_bar) * per_bar  # whole bars
    sums: list[int] = []
    for start in range(0, len(minutes) if fields else 0, per_call):
        chunk = minutes[start : start + per_call]
        sums += lua(conn, _SUM_BARS_LUA)(keys=[keys.throughput(minute) for minute in chunk], args=[per_bar, *fields])
    for index in range(bar_count if fields else 0):
        for position in range(len(fields)):
            counts[queues[position // 2]][index][position % 2] += int(sums[index * len(fields) + position])
    starts = [datetime.fromtimestamp(first_bar + i * bar_s, timezone.utc) for i in range(bar_count)]
    per_queue = {
        queue: [Bar(start, done, failed) for start, (done, failed) in zip(starts, rows, strict=True)]
        for queue, rows in counts.items()
    }
    bars = [
        Bar(start, sum(counts[q][i][0] for q in queues), sum(counts[q][i][1] for q in queues))
        for i, start in enumerate(starts)
    ]
    return Throughput(span, bar_s, bars, per_queue)
