"""Finished jobs and what they returned: a site's finished jobs newest first (RQ keeps them for
`job_result_ttl`), and the return value of each, read as RQ stores it (base64 of JSON) but cut inside Redis,
so a listing of 50 jobs that returned megabytes moves a few kilobytes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from datetime import datetime, timezone

import redis
from rq.results import Result

from ..core.config import BenchSettings
from ..core.connection import lua
from .brief import read_briefs
from .listings import JobSummary, results_key, summarize
from .queues import rq_queue
from .scan import Source, scan_ids, selected_queues, site_prefixes

LISTED_RESULT_CHARS = 120  # of a return value a listing shows
DETAIL_RESULT_CHARS = 64 * 1024  # of a return value a job's page shows

# The start of the return value of each job's latest result, when that result is a success.
# KEYS: the results streams. ARGV: base64 characters to return at most, RQ's type of a successful result.
# Returns per key {found (1, or 0 when the latest result is no success), the cut value, its whole length}.
_RESULTS_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local entry = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  local found, value = 0, ''
  if entry then
    local fields = entry[2]
    local kind
    for j = 1, #fields, 2 do
      if fields[j] == 'type' then kind = fields[j + 1] end
      if fields[j] == 'return_value' then value = fields[j + 1] end
    end
    if kind == ARGV[2] then found = 1 end
  end
  out[i] = {found, string.sub(value, 1, tonumber(ARGV[1])), #value}
end
return out
"""


def finished_source(conn: redis.Redis, settings: BenchSettings, queue: str) -> Source:
    return Source(queue, rq_queue(conn, settings, queue).finished_job_registry.key, "zset", "finished")


def finished_jobs(
    conn: redis.Redis,
    settings: BenchSettings,
    sites: Collection[str] | None,
    queues: Sequence[str] | None = None,
    limit: int = 100,
) -> list[JobSummary]:
    """The finished jobs of `sites` (None: of every site) still kept, newest first, each with the start of
    what it returned in `result`."""
    prefixes = site_prefixes(settings.bench_id, sites)
    found: list[JobSummary] = []
    for queue in selected_queues(settings, queues):
        taken = 0
        # Scores are the time a job finished + job_result_ttl (+inf when kept forever): newest first.
        for page in scan_ids(conn, finished_source(conn, settings, queue), prefixes, newest_first=True):
            briefs = [b for b in read_briefs(conn, [job_id for job_id, _ in page[: limit - taken]]) if b is not None]
            results = return_values(conn, [brief.id for brief in briefs], LISTED_RESULT_CHARS)
            found += [summarize(brief, "finished", result=results.get(brief.id)) for brief in briefs]
            taken += len(briefs)
            if taken >= limit:
                break
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    found.sort(key=lambda summary: summary.ended_at or epoch, reverse=True)
    return found[:limit]


def return_values(conn: redis.Redis, job_ids: Sequence[str], max_chars: int) -> dict[str, str]:
    """job id -> the JSON text of what it returned (`null` for nothing), cut to about `max_chars` with an
    ellipsis, for the jobs whose latest result is a success (one round trip)."""
    if not job_ids:
        return {}
    base64_chars = (max_chars + 2) // 3 * 4  # a whole number of base64 quads decodes on its own
    success = str(Result.Type.SUCCESSFUL.value)
    replies = lua(conn, _RESULTS_LUA)(keys=[results_key(job_id) for job_id in job_ids], args=[base64_chars, success])
    values = {}
    for job_id, (found, cut_value, length) in zip(job_ids, replies, strict=True):
        if not found:
            continue
        try:
            text = base64.b64decode(cut_value).decode(errors="replace") if cut_value else "null"
        except (binascii.Error, ValueError):
            text = "(its return value in Redis cannot be read)"
        values[job_id] = text + "…" if int(length) > len(cut_value) else text
    return values
