"""Pushing built jobs onto their queues (or, for delayed jobs, into their queue's scheduled registry): one
pipelined round trip for any number of jobs, with the atomic check-and-enqueue script for jobs that carry a
caller-given id (deduplicate, or refuse a twin)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.utils import now as rq_now

from ..core.connection import down_error, full_error_message
from ..core.keys import Keys, bench_id_of, queue_of
from ..core.replication import check_wait, confirm_replicated, queue_wait
from ..errors import JobError, RedisUnavailable
from . import lost_reply
from .fair import announce_pushes, line_of, queue_push, wake
from .queues import dedup_script


@dataclass
class PendingJob:
    """A job built but not yet sent: inside a transaction, or on its way out in a pipeline."""

    queue: Queue
    job: Job
    at_front: bool
    deduplicate: bool
    refuse_duplicate: bool = False  # a caller-given job_id without deduplicate: a pending twin is an error
    due_s: float | None = None  # a delayed job: when it falls due (epoch s), the score in the scheduled registry


def send(conn: redis.Redis, pending: list[PendingJob]) -> list[Job | None]:
    """Push jobs in one pipelined round trip; a deduplicated job whose id is queued or running comes back
    None. Jobs with a caller-given id always go through the atomic check, so one id is never queued twice:
    without deduplicate such a twin raises JobError (after the other jobs went out)."""
    if not pending:
        return []
    dedup_positions: dict[int, int] = {}
    commands: list[range] = []  # each job's commands in the pipeline
    turns: dict[tuple[str, str], tuple[set[str], int]] = {}  # (bench, queue) -> its plain pushes' lines, count
    # No MULTI: Redis would not roll a batch back anyway, and parsing a QUEUED reply per command costs ~10%.
    sender: lost_reply.Sender | None = None
    try:
        with conn.pipeline(transaction=False) as pipe:
            # The connection is taken up front, so the id Redis gave it is known if its reply is lost.
            pipe.connection = conn.connection_pool.get_connection()
            sender = lost_reply.sender_of(conn, pipe.connection)
            for queue in {id(item.queue): item.queue for item in pending}.values():
                pipe.sadd(queue.redis_queues_keys, queue.key)
            for index, item in enumerate(pending):
                first = len(pipe.command_stack)
                if item.deduplicate or item.refuse_duplicate:
                    _push_dedup(conn, pipe, item)
                    dedup_positions[index] = len(pipe.command_stack) - 1
                elif item.due_s is not None:
                    _push_scheduled(pipe, item, item.due_s)
                else:
                    # What RQ's enqueue does per job, in two commands instead of three: its separate HSET of the
                    # status is left out (the saved hash holds it), as are its dependency check (bench-jobs jobs
                    # have none), its SADD per job and its cleanup (no job ttl).
                    item.queue._prepare_for_queue(item.job)
                    item.job.save(pipeline=pipe)
                    bench_id, queue_name = bench_id_of(item.queue.name), queue_of(item.queue.name)
                    queue_push(pipe, bench_id, queue_name, item.queue.key, item.job.id, item.at_front, announce=False)
                    lines, count = turns.get((bench_id, queue_name), (set(), 0))
                    turns[(bench_id, queue_name)] = (lines | {line_of(bench_id, item.job.id)}, count + 1)
                commands.append(range(first, len(pipe.command_stack)))
            for (bench_id, queue_name), (lines, pushed) in turns.items():  # once per queue, not once per job
                announce_pushes(pipe, bench_id, queue_name, lines, pushed)
            waits = queue_wait(conn, pipe)
            results = pipe.execute(raise_on_error=False)
    except redis.AuthenticationError as exc:
        raise down_error(conn, exc) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        found = lost_reply.resolve(conn, pending, exc, sender)
        landed = [job.id for job in found if job is not None]
        marker = Keys(bench_id_of(pending[0].queue.name)).replicated
        confirm_replicated(conn, marker, f"Job {', '.join(landed) or '(none new)'}", landed)
        return found
    acked = results.pop() if waits else None
    errors = [result for result in results if isinstance(result, Exception)]
    if any(isinstance(error, redis.OutOfMemoryError) for error in errors):
        raise full_error(conn, pending, commands, results)
    if errors:
        raise errors[0]
    skipped = {index for index, position in dedup_positions.items() if not results[position]}
    if waits:
        queued = [item.job.id for index, item in enumerate(pending) if index not in skipped]
        check_wait(conn, acked, f"Job {', '.join(queued) or '(none new)'}", queued)
    refused = [pending[index].job.id for index in sorted(skipped) if pending[index].refuse_duplicate]
    if refused:
        raise JobError(
            f"A job with id {', '.join(refused)} is already queued or running.",
            hint="Pass deduplicate=True to skip it quietly, or give each job its own job_id.",
        )
    return [None if index in skipped else item.job for index, item in enumerate(pending)]


def queued_job_fields(job: Job, queue: Queue, scheduled: bool = False) -> list[Any]:
    """The job hash of `job` queued on `queue` (or `scheduled` there: no enqueued_at until it falls due), as
    HSET field/value arguments for a Lua script that enqueues it atomically (what RQ's own enqueue would write)."""
    job.origin = queue.name
    job.enqueued_at = None if scheduled else rq_now()
    fields: list[Any] = []
    for key, value in {**job.to_dict(), "status": "scheduled" if scheduled else "queued"}.items():
        if value is not None:
            fields += [key, value if isinstance(value, (bytes, str)) else str(value)]
    return fields


def _push_dedup(conn: redis.Redis, pipe: Any, item: PendingJob) -> None:
    """Queue the atomic check-and-enqueue script for one deduplicated job on `pipe`."""
    job, rq_q = item.job, item.queue
    if item.due_s is not None:
        job.enqueue_at_front = item.at_front or None  # the due move honours it
    fields = queued_job_fields(job, rq_q, scheduled=item.due_s is not None)
    registries = [FinishedJobRegistry(queue=rq_q), FailedJobRegistry(queue=rq_q), CanceledJobRegistry(queue=rq_q)]
    keys = [
        job.key,
        rq_q.key,
        rq_q.redis_queues_keys,
        *(r.key for r in registries),
        StartedJobRegistry(queue=rq_q).key,
        rq_q.scheduled_job_registry.key,
    ]
    due = "" if item.due_s is None else repr(item.due_s)
    direction = "L" if item.at_front else "R"
    args = [job.id, direction, rq_q.key, Keys(bench_id_of(rq_q.name)).worker_alive(""), due, *fields]
    dedup_script(conn)(keys=keys, args=args, client=pipe)


def _push_scheduled(pipe: Any, item: PendingJob, due_s: float) -> None:
    """What RQ's schedule_job writes, on `pipe`, with the exact due time as the score (RQ truncates it to the
    second, which would run a job up to a second early). The registry entry goes first: a batch cut between
    the two leaves an id without a hash, which the due move drops, rather than a hash nothing will ever run."""
    job, rq_q = item.job, item.queue
    rq_q._prepare_for_queue(job)
    job.enqueued_at = None
    job.enqueue_at_front = item.at_front or None
    job._status = JobStatus.SCHEDULED
    pipe.zadd(rq_q.scheduled_job_registry.key, {job.id: due_s})
    job.save(pipeline=pipe)
    wake(pipe, Keys(bench_id_of(rq_q.name)).wake(queue_of(rq_q.name)))


def full_error(
    conn: redis.Redis, pending: list[PendingJob], commands: list[range], results: list[Any]
) -> RedisUnavailable:
    """RedisUnavailable (exit 3) for a batch a full Redis refused, naming the jobs it did not queue. A job
    whose push was refused loses its hash too, should its save have gone through (DEL is allowed in a full
    Redis), so no half-written job is left behind."""
    refused = [
        item.job
        for item, positions in zip(pending, commands, strict=True)
        if any(isinstance(results[position], Exception) for position in positions)
    ]
    half_written = [
        item.job.key for item in pending if item.job in refused and not (item.deduplicate or item.refuse_duplicate)
    ]
    if half_written:  # never a deduplicated job's: its atomic script wrote nothing, and the id may be another's
        with contextlib.suppress(redis.RedisError):
            conn.delete(*half_written)
    queued = len(pending) - len(refused)
    ids = ", ".join(job.id for job in refused)
    also = f" ({queued} other job(s) of the batch were queued)" if queued else ""
    message, hint = full_error_message(conn)
    return RedisUnavailable(f"{message}: job {ids} was NOT queued{also}.", hint=hint)
