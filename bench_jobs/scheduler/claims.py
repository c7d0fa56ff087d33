"""Claiming a site's due slots in Redis: one Lua call per site per tick compares each job's latest slot with
the last one it fired for, records it, and checks that the job's previous run is not still alive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from rq.job import Job

from ..core.config import SiteSettings
from ..core.hooks import ScheduledJob
from ..core.keys import Keys
from ..core.replication import check_wait, queue_wait
from ..jobs.liveness import STARTED_BEFORE_RESTART_LUA

PAUSED_FIELD = "|paused"  # in a site's last-slots hash while its scheduler is off; never a job key

# One site's claims and overlap checks, atomically (so two schedulers on the same tick fire a slot once).
# KEYS: last-slots hash, last-runs hash, in-flight hash.
# ARGV: worker-alive key prefix, RQ job key prefix, now and resume cutoff (epoch s), site, then the site's
#   jobs packed in one string (records split by \x1e, fields by \x1f): job key, latest slot (epoch s), RQ job
#   id for that slot and, on a second call only, a verdict on its running previous run ('alive <worker>' /
#   'dead <worker>'). Packing keeps the client's encoding work per site, not per job.
# Only the latest slot is ever compared, so missed slots coalesce into one run. A slot is recorded even when
# skipped, so a skipped job does not fire late. While PAUSED_FIELD is set (the site's scheduler was off),
# slots at or before the cutoff are recorded without firing: a re-enabled site resumes at its next slot.
# A fired run gets an in-flight mark (claimed_runs.py), which its sender removes as it queues it.
# Returns one string: a record '<job position> <outcome>' per job that is due or new (not_due is left out):
# 'first_seen', 'paused', 'fired', 'skipped <status> <previous id>', or 'check <worker> <alive value>' when
# the previous run is started on a worker whose alive key still exists; nothing is written for that job and
# the caller asks again with a verdict after checking the worker's process. 'waiting <previous id>': the
# previous run started before Redis restarted and its worker has not re-marked itself yet (liveness.py);
# nothing is written, and a later tick decides.
CLAIM_LUA = (
    STARTED_BEFORE_RESTART_LUA
    + """
local jobs = {}
for record in string.gmatch(ARGV[6], '[^\\030]+') do
  local job = {}
  for value in string.gmatch(record .. '\\031', '([^\\031]*)\\031') do job[#job + 1] = value end
  jobs[#jobs + 1] = job
end
local fields = {'|paused'}
for i, job in ipairs(jobs) do fields[i + 1] = job[1] end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local paused, cutoff = stored[1], tonumber(ARGV[4])
local out, slots, due = {}, {}, {}
for i, job in ipairs(jobs) do
  local slot, last = tonumber(job[2]), stored[i + 1]
  if last and tonumber(last) >= slot then
    -- not due
  elseif not last or (paused and slot <= cutoff) then
    if last then out[#out + 1] = i .. ' paused' else out[#out + 1] = i .. ' first_seen' end
    slots[#slots + 1] = job[1]
    slots[#slots + 1] = job[2]
  else
    due[#due + 1] = i
  end
end
local runs, inflight = {}, {}
if #due > 0 then
  local names = {}
  for j, i in ipairs(due) do names[j] = jobs[i][1] end
  local previous = redis.call('HMGET', KEYS[2], unpack(names))
  for j, i in ipairs(due) do
    local key, slot, id, verdict = jobs[i][1], jobs[i][2], jobs[i][3], jobs[i][4] or ''
    local result = 'fired'
    local prev = previous[j]
    if prev then
      local run = redis.call('HMGET', ARGV[2] .. prev, 'status', 'worker_name')
      local status, worker = run[1], run[2]
      if status == 'queued' or status == 'scheduled' or status == 'deferred' then
        result = 'skipped ' .. status .. ' ' .. prev
      elseif status == 'started' and worker and worker ~= '' then
        local alive = redis.call('GET', ARGV[1] .. worker)
        if alive and verdict == 'alive ' .. worker then
          result = 'skipped started ' .. prev
        elseif alive and verdict ~= 'dead ' .. worker then
          result = 'check ' .. worker .. ' ' .. alive
        elseif not alive and started_before_restart(ARGV[2] .. prev) then
          result = 'waiting ' .. prev
        end
      end
    end
    out[#out + 1] = i .. ' ' .. result
    if result == 'fired' then
      runs[#runs + 1] = key
      runs[#runs + 1] = id
      inflight[#inflight + 1] = id
      inflight[#inflight + 1] = cjson.encode({site = ARGV[5], key = key, slot = tonumber(slot), at = tonumber(ARGV[3])})
    end
    if string.sub(result, 1, 6) ~= 'check ' and string.sub(result, 1, 8) ~= 'waiting ' then
      slots[#slots + 1] = key
      slots[#slots + 1] = slot
    end
  end
end
if #slots > 0 then redis.call('HSET', KEYS[1], unpack(slots)) end
if #runs > 0 then redis.call('HSET', KEYS[2], unpack(runs)) end
if #inflight > 0 then redis.call('HSET', KEYS[3], unpack(inflight)) end
if paused then redis.call('HDEL', KEYS[1], '|paused') end
return table.concat(out, '\\030')
"""
)
FIELD, RECORD = "\x1f", "\x1e"


@dataclass
class SitePlan:
    """A site's scheduled jobs and what each tick needs of them, rebuilt only when its settings change."""

    settings: SiteSettings
    jobs: list[ScheduledJob]
    problems: list[str]
    crons: tuple[str, ...]
    id_stems: list[str]  # a slot's RQ job id is stem + slot epoch (keys.scheduled_job_id)
    last_slots: tuple[int, ...] = ()
    last_packed: str = ""

    def packed(self, slots: tuple[int, ...]) -> str:
        """The jobs with these slots as the claim script's packed argument (reused while slots stay the same)."""
        if slots != self.last_slots:
            self.last_packed = RECORD.join(
                f"{job.key}{FIELD}{slot}{FIELD}{stem}{slot}"
                for job, slot, stem in zip(self.jobs, slots, self.id_stems, strict=True)
            )
            self.last_slots = slots
        return self.last_packed


@dataclass
class SiteClaim:
    """One site's jobs on one tick: positions into the plan's jobs, their slots, and a packed argument."""

    plan: SitePlan
    slots: tuple[int, ...]
    packed: str
    positions: list[int] = field(default_factory=list)

    @property
    def site(self) -> str:
        return self.plan.settings.name

    def job_at(self, reply_position: int) -> tuple[ScheduledJob, int, str]:
        """The job, slot and job id of a reply's 1-based position."""
        index = self.positions[reply_position - 1] if self.positions else reply_position - 1
        slot = self.slots[index]
        return self.plan.jobs[index], slot, f"{self.plan.id_stems[index]}{slot}"

    def recheck(self, verdicts: dict[int, str]) -> SiteClaim:
        """The same claim for the jobs of `verdicts` only (reply position -> verdict), carrying the verdicts."""
        indexes = [self.positions[p - 1] if self.positions else p - 1 for p in verdicts]
        packed = RECORD.join(
            f"{self.plan.jobs[i].key}{FIELD}{self.slots[i]}{FIELD}{self.plan.id_stems[i]}{self.slots[i]}{FIELD}{v}"
            for i, v in zip(indexes, verdicts.values(), strict=True)
        )
        return SiteClaim(self.plan, self.slots, packed, indexes)


class Claimer:
    """Runs the claim script for many sites in one pipeline."""

    def __init__(self, conn: redis.Redis, keys: Keys) -> None:
        self.conn = conn
        self.keys = keys
        self._script = conn.register_script(CLAIM_LUA)

    def run(
        self,
        claims: Sequence[SiteClaim],
        now_s: int,
        cutoff_s: int,
        newly_paused: Sequence[str],
        also: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        """The script's reply per claim; sites just seen switched off get their paused mark in the same trip,
        and `also` may queue more commands on it (the tick's own record)."""
        prefixes = [self.keys.worker_alive(""), Job.redis_job_namespace_prefix]
        with self.conn.pipeline(transaction=False) as pipe:
            for claim in claims:
                keys = [self.keys.last_slots(claim.site), self.keys.last_runs(claim.site), self.keys.in_flight]
                self._script(keys=keys, args=[*prefixes, now_s, cutoff_s, claim.site, claim.packed], client=pipe)
            for site in newly_paused:
                pipe.hset(self.keys.last_slots(site), PAUSED_FIELD, now_s)
            if also is not None:
                also(pipe)
            waits = queue_wait(self.conn, pipe)
            replies = pipe.execute()
        if waits:
            check_wait(self.conn, replies[-1], f"The slot claims of {len(claims)} site(s)")
        return replies[: len(claims)]


def parse_reply(reply: bytes | None) -> list[tuple[int, str, str]]:
    """A claim reply as (1-based job position, outcome, detail) records."""
    records = []
    for record in reply.decode().split(RECORD) if reply else ():
        position, outcome, detail = [*record.split(" ", 2), ""][:3]
        records.append((int(position), outcome, detail))
    return records
