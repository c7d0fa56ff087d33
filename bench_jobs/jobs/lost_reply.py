"""An enqueue whose reply was lost: finding out, by the ids it generated, whether its write landed.

A reply can be lost after Redis ran the command: a stalled Redis (a long DEBUG SLEEP, a fork on a huge dataset,
a paused VM) reads the pipeline when it wakes, after the client gave up. Reporting such a job as not queued
makes the producer send it again, and it runs twice under two ids. So the answer is found in Redis:

- nothing was sent (the connection itself failed): NOT queued, for sure;
- once Redis answers again, the connection that sent the write is killed by its client id (CLIENT KILL ID, so
  Redis can no longer run what it had not read yet), then each job is looked up: it landed, or it never will;
- where that kill is not possible (no client id from the handshake, CLIENT refused by an ACL) or Redis does
  not answer within LOST_REPLY_WAIT_S, a job not found MAY still have been queued: the error says so and
  names its id.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue
from rq.job import Job

from ..core.connection import down_error, lua
from ..core.sentinel import master_address
from ..errors import MaybeQueued, RedisUnavailable
from .fair import FAIR_LUA, NEWCOMER_PASS

if TYPE_CHECKING:
    from .push import PendingJob

LOST_REPLY_WAIT_S = 30.0  # how long an enqueue whose reply was lost waits for Redis to answer again
POLL_FIRST_S = 0.1
POLL_MAX_S = 2.0

# Whether one job's enqueue landed: its hash and its place in the queue or the scheduled registry (or beyond:
# taken, run). A hash that still says queued (scheduled) but is in no list (not in the registry) is a pipeline
# cut in the middle: with DEL_HALF set (the sending connection is dead for sure) it is deleted and the job did
# not land. A job on its queue whose pipeline was cut before its site's line or turn is indexed here, so the
# take serves it now rather than after the next reindex. KEYS: job hash, queue, its intermediate list, its
# scheduled registry. ARGV: job id, DEL_HALF (1 or 0). Returns 1 landed, 0 not, -1 half-written (kept).
LANDED_LUA = (
    FAIR_LUA
    + f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'scheduled' then
  if redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 1 end
elseif status ~= 'queued' then return 1
elseif redis.call('LPOS', KEYS[2], ARGV[1]) then
  local fair = fair_names(KEYS[2])
  local site = site_of(KEYS[2], ARGV[1])
  local line = fair .. ':site:' .. site
  if not redis.call('LPOS', line, ARGV[1]) then redis.call('RPUSH', line, ARGV[1]) end
  redis.call('ZADD', fair, 'NX', {NEWCOMER_PASS}, site)
  fair_wake(KEYS[2])
  return 1
elseif redis.call('LPOS', KEYS[3], ARGV[1]) then return 1 end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
return -1
"""
)


def client_id(connection: Any) -> int | None:
    """The server-side id of a redis-py connection, from its HELLO handshake (RESP3); None without one."""
    metadata = getattr(connection, "handshake_metadata", None) or {}
    value = metadata.get(b"id", metadata.get("id")) if isinstance(metadata, dict) else None
    return int(value) if value is not None else None


def nothing_was_sent(exc: BaseException) -> bool:
    """Whether redis-py failed while connecting, before any command went out ("Error 111 connecting to ...",
    "Timeout connecting to server")."""
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError) and "connecting to" in str(exc)


# A connection that sent a write: its server-side id, and the server it is on (host, port) when Sentinel picks
# the server, else None (one server: the URL's).
Sender = tuple[int, tuple[str, int] | None]


def sender_of(client: Any, connection: Any) -> Sender | None:
    """A connection of `client` (a client or its pipeline) as a Sender; None without an id from its handshake."""
    found = client_id(connection)
    if found is None:
        return None
    sentinel = hasattr(client.connection_pool, "master_address")  # redis-py's SentinelConnectionPool
    return found, ((str(connection.host), int(connection.port)) if sentinel else None)


def fence(conn: redis.Redis, senders: Sequence[Sender]) -> bool:
    """Kill these connections (gone already after a drop), so that nothing they sent can still run; raises
    redis' ConnectionError or TimeoutError while Redis does not answer. A connection to a master Sentinel no
    longer names is left alone: that server adds nothing to the new master's data, and its client id means
    nothing on the new one (killing it there could end a stranger's connection). False when Redis refused the
    kill (an ACL user may not run CLIENT KILL): then a write still on its way may land after a lookup."""
    now_at = master_address(conn) if any(server is not None for _, server in senders) else None
    sure = True
    for found, server in senders:
        if server is not None and server != now_at:
            continue
        try:
            conn.client_kill_filter(_id=str(found))
        except redis.exceptions.NoPermissionError:
            sure = False
        except redis.ResponseError:  # no such client: it is gone
            pass
    return sure


def resolve(
    conn: redis.Redis,
    pending: Sequence[PendingJob],
    exc: BaseException,
    sender: Sender | None,
) -> list[Job | None]:
    """The outcome of a batch whose reply was lost: the jobs when they all landed; else RedisUnavailable (exit 3)
    saying they were NOT queued when that is sure, or MaybeQueued naming the ids when it is not."""
    failure = down_error(conn, exc)
    if nothing_was_sent(exc):
        raise _not_queued(failure, pending)
    landed = _wait_and_look(conn, pending, sender)
    if landed is None or any(state is None for state in landed):
        raise _maybe_queued(failure, pending, landed)
    if all(landed):
        return [item.job for item in pending]
    raise _not_queued(failure, [item for item, state in zip(pending, landed, strict=True) if not state], len(pending))


def _wait_and_look(conn: redis.Redis, pending: Sequence[PendingJob], sender: Sender | None) -> list[bool | None] | None:
    """Per job, whether it landed (None: not found, but it may still land); None when Redis did not answer
    within LOST_REPLY_WAIT_S."""
    deadline = time.monotonic() + LOST_REPLY_WAIT_S
    delay = POLL_FIRST_S
    while True:
        try:
            sure = sender is not None and fence(conn, [sender])  # no id from the handshake: say "maybe"
            return [_landed(conn, item, sure) for item in pending]
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() + delay > deadline:
                return None
        time.sleep(delay)
        delay = min(delay * 2, POLL_MAX_S)


def _landed(conn: redis.Redis, item: PendingJob, sure: bool) -> bool | None:
    queue: Queue = item.queue
    keys = [item.job.key, queue.key, f"{queue.key}:intermediate", queue.scheduled_job_registry.key]
    state = int(lua(conn, LANDED_LUA)(keys=keys, args=[item.job.id, 1 if sure else 0]))
    if state == 1:
        return True
    return False if sure else None


def _not_queued(failure: RedisUnavailable, jobs: Sequence[PendingJob], total: int = 0) -> RedisUnavailable:
    ids = ", ".join(item.job.id for item in jobs)
    also = f" ({total - len(jobs)} other job(s) of the batch were queued)" if total > len(jobs) else ""
    return RedisUnavailable(f"{failure.message}; job {ids} was NOT queued{also}.", hint=failure.hint)


def _maybe_queued(
    failure: RedisUnavailable, pending: Sequence[PendingJob], landed: list[bool | None] | None
) -> MaybeQueued:
    unsure = [item.job.id for item, state in zip(pending, landed or [None] * len(pending), strict=True) if not state]
    return MaybeQueued(
        f"{failure.message}; its reply was lost, so job {', '.join(unsure)} MAY have been queued.",
        hint=f"Look the job up (`redis-cli EXISTS rq:job:{unsure[0]}`) before sending it again; enqueue with "
        "job_id=... and deduplicate=True so that a retry cannot run a job twice.",
        job_ids=unsure,
    )
