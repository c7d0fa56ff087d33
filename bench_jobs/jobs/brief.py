"""What a listing reads of a job: a few small hash fields, never the payload. bench-jobs writes its site,
method, job name and event into fields of their own when it makes a job (cut to BRIEF_CHARS), so a listing
of 5,000 jobs with 1 MB arguments reads kilobytes. A job made before those fields existed, or by another
tool, falls back to its payload only when that is small (FALLBACK_PAYLOAD_BYTES); else they show unknown."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq.job import Job
from rq.utils import str_to_date

from .payload import PayloadTooLarge, inflate

BRIEF_CHARS = 200  # of a method path, job name or event kept for listings; the job's page shows them whole
FALLBACK_PAYLOAD_BYTES = 64 * 1024  # an old job's payload up to this size (compressed) is read to list it
FALLBACK_INFLATED_BYTES = 4 * 1024 * 1024  # ... and inflated up to this size; past it, it lists as unknown
FALLBACK_BATCH = 50  # old jobs' payloads per round trip
PAGE_SIZE = 1000  # job hashes per round trip

_SUMMARY = {"site": "bj_site", "method": "bj_method", "job_name": "bj_job_name", "event": "bj_event"}
_RQ_FIELDS = ("origin", "status", "enqueued_at", "started_at", "ended_at", "worker_name")
_READ = (*_RQ_FIELDS, *_SUMMARY.values())


@dataclass(frozen=True)
class Brief:
    """The fields of one job hash a listing shows, already decoded; None where missing or malformed."""

    id: str
    origin: str
    status: str | None
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    worker_name: str | None
    site: str | None
    method: str | None
    job_name: str | None
    event: str | None


def cut(value: object, limit: int = BRIEF_CHARS) -> str | None:
    """`value` as listing text: a string cut to `limit` characters (with an ellipsis); None for anything
    else (a forged payload's `method` may be a list)."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def summary_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """The hash fields listings read, from a bench-jobs payload `{site, method, job_name, event, ...}`."""
    fields = {}
    for name, field in _SUMMARY.items():
        text = cut(payload.get(name))
        if text is not None:
            fields[field] = text
    return fields


def read_briefs(conn: redis.Redis, job_ids: Sequence[str]) -> list[Brief | None]:
    """The briefs of `job_ids` (None where a job is gone), PAGE_SIZE hashes per round trip."""
    briefs: list[Brief | None] = []
    for start in range(0, len(job_ids), PAGE_SIZE):
        page = job_ids[start : start + PAGE_SIZE]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in page:
                pipe.hmget(Job.key_for(job_id), _READ)
                pipe.hstrlen(Job.key_for(job_id), "data")
            replies = pipe.execute()
        rows = [(replies[2 * i], replies[2 * i + 1]) for i in range(len(page))]
        # bench-jobs' own jobs always have a method field; an old or foreign one may have a small payload.
        fallback = [job_id for job_id, (values, size) in zip(page, rows, strict=True) if _needs_payload(values, size)]
        payloads = _small_payloads(conn, fallback)
        for job_id, (values, _) in zip(page, rows, strict=True):
            briefs.append(_brief(job_id, values, payloads.get(job_id)) if any(values) else None)
    return briefs


def _needs_payload(values: list[bytes | None], size: int) -> bool:
    return any(values) and values[len(_RQ_FIELDS) + 1] is None and 0 < size <= FALLBACK_PAYLOAD_BYTES


def _small_payloads(conn: redis.Redis, job_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """job id -> the listed fields of its payload, for jobs whose `data` is small, FALLBACK_BATCH at a time
    and each payload dropped once its few fields are taken, so at most one inflated payload is held."""
    found: dict[str, dict[str, str | None]] = {}
    for start in range(0, len(job_ids), FALLBACK_BATCH):
        batch = job_ids[start : start + FALLBACK_BATCH]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in batch:
                pipe.hget(Job.key_for(job_id), "data")
            raws = pipe.execute()
        for job_id, raw in zip(batch, raws, strict=True):
            payload = payload_from_data(raw or b"", FALLBACK_INFLATED_BYTES)
            found[job_id] = {name: cut(payload.get(name)) for name in _SUMMARY}
    return found


def payload_from_data(data: bytes, limit_bytes: int) -> dict[str, Any]:
    """The bench-jobs payload (RQ's kwargs) inside a job's `data`; {} when it is too big, not JSON, or not
    shaped as RQ's (function, instance, args, kwargs)."""
    try:
        loaded = json.loads(inflate(data, limit_bytes))
    except (PayloadTooLarge, ValueError, RecursionError):
        return {}
    kwargs = loaded[3] if isinstance(loaded, list) and len(loaded) == 4 else None
    return kwargs if isinstance(kwargs, dict) else {}


def _brief(job_id: str, values: list[bytes | None], payload: dict[str, str | None] | None) -> Brief:
    texts = [value.decode(errors="replace") if value is not None else None for value in values]
    rq = dict(zip(_RQ_FIELDS, texts[: len(_RQ_FIELDS)], strict=True))
    summary = dict(zip(_SUMMARY, texts[len(_RQ_FIELDS) :], strict=True))
    if payload is not None:
        summary = payload
    return Brief(
        id=job_id,
        origin=rq["origin"] or "",
        status=rq["status"],
        enqueued_at=_date(rq["enqueued_at"]),
        started_at=_date(rq["started_at"]),
        ended_at=_date(rq["ended_at"]),
        worker_name=rq["worker_name"],
        site=summary["site"],
        method=summary["method"],
        job_name=summary["job_name"],
        event=summary["event"],
    )


def _date(text: str | None) -> datetime | None:
    """RQ's timestamp, or None when missing or malformed (written by another tool)."""
    if not text:
        return None
    try:
        return str_to_date(text)
    except ValueError:
        return None
