"""A census of a bench's jobs and workers, the read model behind the Prometheus metrics: jobs by queue, site
and state, the oldest queued job per queue, live workers by state, and the durations of recent finished jobs.

Built for big benches (1,000 sites, 100,000 queued jobs): ids are counted inside Redis by the site their id
names (keys.py), a page per Lua call, all calls in one pipeline, so neither the ids nor any job hash cross
the wire; only the oldest enqueued_at of each queue's head and the timestamps of its newest finished runs
come back (Lua too). Counts follow `queue_stats` (show-queue): the started registry's ids once each, and
finished and failed entries not yet expired.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis
from rq import Worker
from rq.job import Job

from ..core.config import BenchSettings
from ..core.connection import lua
from ..core.keys import bench_job_prefix, decode_part, encode_part
from .listings import QueueStats, queue_stats
from .queues import queue_order, rq_queue

UNKNOWN_SITE = "(unknown)"  # the site label of ids bench-jobs did not make (never a valid site name)
ID_PAGE_SIZE = 10_000  # queued ids per counting call (registries, smaller, are counted in one call each)
OLDEST_SAMPLE = 100  # ids at the head of a queue whose enqueued_at is read: jobs pushed to the front (at_front)
DURATION_SAMPLE = 1000  # newest finished jobs per queue whose started_at and ended_at are read
_JOB_PREFIX = Job.redis_job_namespace_prefix.encode()


@dataclass(frozen=True)
class JobCensus:
    """What the metrics show of a bench's jobs and workers at one instant."""

    jobs: dict[tuple[str, str, str], int]  # (queue, site, state) -> count; sites without jobs left out
    oldest_queued_at: dict[str, datetime]  # queue -> enqueued_at of its oldest queued job (queues with jobs only)
    durations_s: dict[str, list[float]]  # queue -> run times of its newest finished jobs (up to DURATION_SAMPLE)
    queues: list[QueueStats]  # per queue totals, with orphaned jobs and the live workers serving it
    workers_by_state: dict[str, int]  # RQ's worker state (idle, busy, suspended, ...) -> live workers


# Count one page of a queue's list or registry by the encoded site of each id, inside Redis: only
# (site, count) pairs cross the wire, not 100,000 ids, and each call holds Redis for one page only.
# KEYS: the list or sorted set. ARGV: kind (list, zset, started), start, stop (indexes, or scores for zset
# kinds: a min and a max), the bench's id prefix. Started registry members are `<id>:<execution>`, counted
# once per id. Returns a flat array: encoded site ('' for an id without the prefix), count, ...
COUNT_BY_SITE_LUA = """
local ids
if ARGV[1] == 'list' then
  ids = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
elseif ARGV[1] == 'zset' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3])
else
  ids = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3])
end
local prefix, counts, seen = ARGV[4], {}, {}
local skip = #prefix
for _, id in ipairs(ids) do
  if ARGV[1] == 'started' then
    id = string.match(id, '^([^:]*)')
  end
  if not seen[id] then
    if ARGV[1] == 'started' then seen[id] = true end
    local site = ''
    if string.sub(id, 1, skip) == prefix then
      local dash = string.find(id, '-', skip + 1, true)
      site = string.sub(id, skip + 1, dash and dash - 1 or -1)
    end
    counts[site] = (counts[site] or 0) + 1
  end
end
local out = {}
for site, count in pairs(counts) do
  out[#out + 1] = site
  out[#out + 1] = count
end
return out
"""

# The earliest enqueued_at among the first ARGV[1] jobs of the list KEYS[1] (ARGV[2]: RQ's job key prefix), or
# false: RQ's timestamps have one fixed format, so the smallest string is the earliest time. The head holds
# the oldest job unless more than OLDEST_SAMPLE jobs were pushed to the front after it.
OLDEST_LUA = """
local oldest = false
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, ARGV[1] - 1)) do
  local at = redis.call('HGET', ARGV[2] .. id, 'enqueued_at')
  if at and (not oldest or at < oldest) then oldest = at end
end
return oldest
"""

# `started ended` of the newest ARGV[1] jobs of the finished registry KEYS[1] (scores: end + result TTL),
# joined by ',' into one string: one reply to parse instead of a thousand.
RECENT_RUNS_LUA = """
local runs = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, ARGV[1] - 1)) do
  local times = redis.call('HMGET', ARGV[2] .. id, 'started_at', 'ended_at')
  if times[1] and times[2] then runs[#runs + 1] = times[1] .. ' ' .. times[2] end
end
return table.concat(runs, ',')
"""


def take_census(conn: redis.Redis, settings: BenchSettings, now: datetime) -> JobCensus:
    """The census of the bench's jobs and workers at `now`, in a fixed number of round trips whatever the
    bench's size (the counting calls of one round trip run one by one in Redis, a page each)."""
    names = queue_order(settings)
    queues = [rq_queue(conn, settings, name) for name in names]
    with conn.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.llen(q.key)
        lengths = cast(list[int], pipe.execute())
    prefix = bench_job_prefix(settings.bench_id)
    count, oldest_script, recent_script = _scripts_of(conn)
    now_s = now.timestamp()
    tags: list[tuple[str, str]] = []  # (queue, state, or "oldest" / "recent") of each reply, in order
    with conn.pipeline(transaction=False) as pipe:

        def counted(name: str, state: str, key: str, *args: object) -> None:
            count(keys=[key], args=[*args, prefix], client=pipe)
            tags.append((name, state))

        for q, name, length in zip(queues, names, lengths, strict=True):
            for start in range(0, length, ID_PAGE_SIZE):
                counted(name, "queued", q.key, "list", start, start + ID_PAGE_SIZE - 1)
            counted(name, "started", q.started_job_registry.key, "started", 0, -1)  # running jobs: few
            for state, key in (("failed", q.failed_job_registry.key), ("finished", q.finished_job_registry.key)):
                counted(name, state, key, "zset", "-inf", "(0")  # score -1: kept forever
                counted(name, state, key, "zset", f"({now_s}", "+inf")  # [0, now]: expired, not yet cleaned
            counted(name, "scheduled", q.scheduled_job_registry.key, "zset", "-inf", "+inf")
            counted(name, "deferred", q.deferred_job_registry.key, "zset", "-inf", "+inf")
            oldest_script(keys=[q.key], args=[OLDEST_SAMPLE, _JOB_PREFIX], client=pipe)
            tags.append((name, "oldest"))
            recent_script(keys=[q.finished_job_registry.key], args=[DURATION_SAMPLE, _JOB_PREFIX], client=pipe)
            tags.append((name, "recent"))
        replies: list[Any] = pipe.execute()
    sites = _SiteNames()
    jobs: Counter[tuple[str, str, str]] = Counter()
    oldest: dict[str, datetime] = {}
    durations: dict[str, list[float]] = {}
    for (name, state), reply in zip(tags, replies, strict=True):
        if state == "oldest":
            moment = _moment(reply)
            if moment is not None:
                oldest[name] = moment
        elif state == "recent":
            durations[name] = _durations(reply)
        else:
            for site, number in zip(reply[::2], reply[1::2], strict=True):
                jobs[name, sites.site(site), state] += int(number)
    stats = queue_stats(conn, settings, now)
    return JobCensus(dict(jobs), oldest, durations, stats, _workers_by_state(conn, stats))


def _scripts_of(conn: redis.Redis) -> tuple[Any, Any, Any]:
    """The counting, oldest and recent-runs scripts registered on `conn`."""
    return lua(conn, COUNT_BY_SITE_LUA), lua(conn, OLDEST_LUA), lua(conn, RECENT_RUNS_LUA)


class _SiteNames:
    """Decodes each distinct encoded site of the counting replies once."""

    def __init__(self) -> None:
        self.sites: dict[bytes, str] = {}

    def site(self, encoded: bytes) -> str:
        site = self.sites.get(encoded)
        if site is None:
            site = self.sites[encoded] = _decoded_site(encoded.decode())
        return site


def _decoded_site(encoded: str) -> str:
    """The site an encoded id part names, or UNKNOWN_SITE when it is not bench-jobs' encoding of a site."""
    if not encoded:
        return UNKNOWN_SITE
    try:
        site = decode_part(encoded)
    except (ValueError, UnicodeDecodeError):
        return UNKNOWN_SITE
    return site if site and encode_part(site) == encoded else UNKNOWN_SITE


def _durations(reply: bytes) -> list[float]:
    """Run times from RECENT_RUNS_LUA's `started ended,started ended,...`."""
    durations = []
    for pair in reply.decode().split(",") if reply else ():
        started, _, ended = pair.partition(" ")
        began, done = _moment(started), _moment(ended)
        if began is not None and done is not None:
            durations.append(max(0.0, (done - began).total_seconds()))
    return durations


def _moment(value: bytes | str | None) -> datetime | None:
    """A timestamp as RQ writes it (`utcformat`: ISO 8601 ending in Z); fromisoformat is 20 times faster than
    RQ's strptime, which a scrape would call thousands of times."""
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _workers_by_state(conn: redis.Redis, stats: Sequence[QueueStats]) -> dict[str, int]:
    """RQ's state of every live worker serving one of the bench's queues (one round trip)."""
    names = sorted({name for row in stats for name in row.workers})
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(Worker.redis_worker_namespace_prefix + name, "state")
        states = pipe.execute()
    return dict(Counter(state.decode() if state else "unknown" for state in states))
