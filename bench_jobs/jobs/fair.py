"""Sites take turns in every queue: the per-site index that every push writes and the worker's take reads.

RQ's list `rq:queue:<bench>:<queue>` stays the truth of what is queued (RQ, `rq info`, listings and purge read
it). Beside it, every script that pushes an id onto that list also appends it to its site's line and gives the
site a turn (FAIR_LUA below), in the same atomic step:

- `bench_jobs:<bench>:fair:<queue>`: sorted set, site -> pass. The take serves the site with the lowest pass
  that is under its cap and adds 1 / its `queue_weight` to it (stride scheduling: a weight of 2 gets two turns
  to another site's one). A push gives a site that had no jobs the pass NEWCOMER_PASS (plain commands can do
  that without reading anything); the take then sets it to the larger of the virtual time (`:vt`, the
  highest pass served so far: it never goes back) and the pass the site would have had next when its line
  last emptied (`:left`), so the site never jumps ahead of sites already waiting, nor waits behind a site's
  whole backlog.
- `bench_jobs:<bench>:fair:<queue>:site:<site>`: list, the site's ids in queue order (`at_front` first).
- `bench_jobs:<bench>:wake:<queue>`: list of tokens, one per push (capped); an idle worker blocks on it.
- `bench_jobs:<bench>:running:<site>`: sorted set, `<job id>|<taker>` -> lease end (Redis time, ms), for
  sites with a `max_concurrent_jobs` cap: a place per take, renewed only by the worker that took it; a dead
  worker's places expire with their lease.
- `bench_jobs:<bench>:caps` / `:weights`: hashes, site -> cap / weight, written by workers from site configs.

`<site>` is the site part of the job id (`core.keys.site_job_prefix`); an id bench-jobs did not make goes to
the line `~`, which takes its turns like a site. An id that left the RQ list some other way (a deleted job)
is dropped from its line when the take meets it (and marks the index stale); an id pushed by another tool is
indexed by the next `reindex` (workers check every maintenance run that the two agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.utils import as_text

from ..core.connection import lua
from ..core.keys import Keys, bench_job_prefix, encode_part

FOREIGN_LINE = "~"  # the line of ids bench-jobs did not make
NEWCOMER_PASS = -1  # a site that gets jobs again; the take gives it the current virtual time before serving
WAKE_TOKENS_MAX = 1000  # more would wake no more workers than that
RUNNING_LEASE_S = 30  # a capped job's place, renewed with every heartbeat of its worker

# Functions shared by every script that pushes onto a queue list or takes from one. A queue key is
# `rq:queue:<bench>:<queue>`, and a bench id holds no ':'.
FAIR_LUA = f"""
local function fair_names(qkey)
  local rest = string.sub(qkey, 10)
  local colon = string.find(rest, ':', 1, true)
  local base = 'bench_jobs:' .. string.sub(rest, 1, colon - 1)
  local queue = string.sub(rest, colon + 1)
  return base .. ':fair:' .. queue, base .. ':wake:' .. queue, base
end

-- The site part of a bench-jobs id of the queue's bench (core.keys.site_job_prefix: the bench id and the
-- site, each encoded as encode_part does, each followed by '-'); any other id (RQ's own uuid4 ids) is foreign.
local function site_of(qkey, id)
  local rest = string.sub(qkey, 10)
  local bench = string.sub(rest, 1, string.find(rest, ':', 1, true) - 1)
  local prefix = string.gsub(bench, '[^%w]', function(c) return string.format('_%02x', string.byte(c)) end) .. '-'
  if string.sub(id, 1, #prefix) == prefix then
    local b = string.find(id, '-', #prefix + 1, true)
    if b and b > #prefix + 1 then return string.sub(id, #prefix + 1, b - 1) end
  end
  return '{FOREIGN_LINE}'
end

local function fair_wake(qkey)
  local _, wake = fair_names(qkey)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, {WAKE_TOKENS_MAX - 1})
end

local function fair_index(qkey, id, front)
  local fair = fair_names(qkey)
  local site = site_of(qkey, id)
  local line = fair .. ':site:' .. site
  if front then redis.call('LPUSH', line, id) else redis.call('RPUSH', line, id) end
  redis.call('ZADD', fair, 'NX', {NEWCOMER_PASS}, site)
  fair_wake(qkey)
end

local function fair_push(qkey, id, front)
  if front then redis.call('LPUSH', qkey, id) else redis.call('RPUSH', qkey, id) end
  fair_index(qkey, id, front)
end

local function fair_remove(qkey, id)
  local fair = fair_names(qkey)
  local site = site_of(qkey, id)
  local line = fair .. ':site:' .. site
  redis.call('LREM', line, 1, id)
  if redis.call('EXISTS', line) == 0 then redis.call('ZREM', fair, site) end
end

local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Rebuild one queue's index from its list when the two disagree (ids pushed or removed by another tool, or
# queued before this version): their counts differ, or the take met an id that had left the list (`:stale`,
# so an id removed and another pushed by hand cannot hide each other for long).
# KEYS: the queue list. ARGV: 'force' to rebuild anyway. Returns how many ids were indexed, or -1.
REINDEX_LUA = (
    FAIR_LUA
    + """
local fair = fair_names(KEYS[1])
local sites = redis.call('ZRANGE', fair, 0, -1)
local indexed = 0
for _, site in ipairs(sites) do indexed = indexed + redis.call('LLEN', fair .. ':site:' .. site) end
if indexed == redis.call('LLEN', KEYS[1]) and redis.call('EXISTS', fair .. ':stale') == 0 and ARGV[1] ~= 'force' then
  return -1
end
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
for _, site in ipairs(sites) do redis.call('DEL', fair .. ':site:' .. site) end
for _, id in ipairs(ids) do redis.call('DEL', fair .. ':site:' .. site_of(KEYS[1], id)) end
redis.call('DEL', fair, fair .. ':stale', fair .. ':vt', fair .. ':left')
for _, id in ipairs(ids) do
  local site = site_of(KEYS[1], id)
  redis.call('RPUSH', fair .. ':site:' .. site, id)
  redis.call('ZADD', fair, 'NX', 0, site)
end
return #ids
"""
)

# Renew the lease of a capped job's place, or take it back once an outage let it lapse (only the worker that
# took the job renews, and it stops before it frees the place). KEYS: the site's running set. ARGV: the
# place's member (`<job id>|<taker>`), lease ms.
RENEW_LUA = FAIR_LUA + "return redis.call('ZADD', KEYS[1], redis_ms() + tonumber(ARGV[2]), ARGV[1])\n"


def site_line(site: str) -> str:
    """The name of a site's line in the fair index (the site part of its job ids)."""
    return encode_part(site)


def line_of(bench_id: str, job_id: str) -> str:
    """The line a job id goes to: what FAIR_LUA's site_of computes (foreign ids, RQ's uuid4 ones among
    them, go to FOREIGN_LINE)."""
    prefix = bench_job_prefix(bench_id)
    site, dash, _ = job_id.removeprefix(prefix).partition("-")
    return site if job_id.startswith(prefix) and dash and site else FOREIGN_LINE


def queue_push(
    pipe: Any, bench_id: str, queue: str, queue_key: str, job_id: str, at_front: bool, announce: bool = True
) -> None:
    """FAIR_LUA's fair_push as plain commands on `pipe` (a script in a pipeline costs redis-py a SCRIPT EXISTS
    round trip per execute). Not atomic: a client cut off halfway leaves an id on the list but not in its line,
    or the reverse, which the next reindex, or the take, puts right. Without `announce` the site's turn and the
    wake token are left to the caller (`announce`, once per batch)."""
    keys, line = Keys(bench_id), line_of(bench_id, job_id)
    push = pipe.lpush if at_front else pipe.rpush
    push(queue_key, job_id)
    push(keys.fair_line(queue, line), job_id)
    if announce:
        announce_pushes(pipe, bench_id, queue, {line}, 1)


def announce_pushes(pipe: Any, bench_id: str, queue: str, lines: Iterable[str], pushed: int) -> None:
    """Give each of `lines` its turn in `queue` (if it has none) and leave one wake token per job pushed (as
    many as WAKE_TOKENS_MAX): what a batch of pushes needs once, not once per job."""
    keys = Keys(bench_id)
    pipe.zadd(keys.fair(queue), dict.fromkeys(lines, NEWCOMER_PASS), nx=True)
    wake(pipe, keys.wake(queue), pushed)


def wake(pipe: Any, wake_key: str, tokens: int = 1) -> None:
    """Leave `tokens` tokens on a wake list (capped at WAKE_TOKENS_MAX), one per idle worker to wake."""
    pipe.lpush(wake_key, *["1"] * min(tokens, WAKE_TOKENS_MAX))
    pipe.ltrim(wake_key, 0, WAKE_TOKENS_MAX - 1)


def reindex(conn: redis.Redis, queue: Queue, force: bool = False) -> int:
    """Rebuild `queue`'s fair index from its list if the two disagree; returns the ids indexed, -1 if none."""
    return int(lua(conn, REINDEX_LUA)(keys=[queue.key], args=["force" if force else "check"]))


def publish_limits(conn: redis.Redis, bench_id: str, limits: Iterable[tuple[str, int | None, int]]) -> None:
    """Write each site's (name, max_concurrent_jobs or None, queue_weight) where the take reads them."""
    keys = Keys(bench_id)
    with conn.pipeline(transaction=False) as pipe:
        for site, cap, weight in limits:
            line = site_line(site)
            if cap:
                pipe.hset(keys.site_caps, line, cap)
            else:
                pipe.hdel(keys.site_caps, line)
            if weight != 1:
                pipe.hset(keys.site_weights, line, weight)
            else:
                pipe.hdel(keys.site_weights, line)
        pipe.execute()


def capped_sites(conn: redis.Redis, bench_id: str, sites: Sequence[str]) -> list[str]:
    """The sites among `sites` that workers published a cap for (one HKEYS, so a scrape of a bench of many
    sites reads the loads of the few capped ones only)."""
    lines = {as_text(line) for line in conn.hkeys(Keys(bench_id).site_caps)}
    return [site for site in sites if site_line(site) in lines]


@dataclass(frozen=True)
class SiteLoad:
    """One site's jobs as the fair take sees them: its cap, jobs running under it, and jobs waiting in line."""

    site: str
    cap: int | None
    running: int
    queued: int

    @property
    def at_cap(self) -> bool:
        return self.cap is not None and self.running >= self.cap


def site_loads(conn: redis.Redis, bench_id: str, sites: Sequence[str], queue_names: Sequence[str]) -> list[SiteLoad]:
    """Each site's cap, running (capped sites only: uncapped ones keep no count) and queued jobs, in one round
    trip; `queue_names` are the bench's queue names."""
    keys = Keys(bench_id)
    now_ms = int(conn.time()[0]) * 1000
    with conn.pipeline(transaction=False) as pipe:
        for site in sites:
            line = site_line(site)
            pipe.hget(keys.site_caps, line)
            pipe.zcount(keys.running(line), now_ms, "+inf")
            for queue in queue_names:
                pipe.llen(keys.fair_line(queue, line))
        replies = pipe.execute()
    loads, step = [], 2 + len(queue_names)
    for index, site in enumerate(sites):
        cap, running, *queued = replies[index * step : (index + 1) * step]
        loads.append(SiteLoad(site, int(cap) if cap else None, int(running), sum(int(n) for n in queued)))
    return loads
