"""Every Redis key name and job-id encoding of bench-jobs, in one place.

RQ's own keys (`rq:queue:<name>`, `rq:job:<id>`, registries) stay RQ's, so `rq info` reads them; bench-jobs
adds queue names `<bench_id>:<queue>` and its own keys under `bench_jobs:<bench_id>:`.

Several benches share one Redis database (with the same site names, even) because every key is namespaced by
the bench id (a slug: no ':'): RQ's keys per queue (list, registries, `rq:scheduler-lock:<queue>`,
`rq:workers:<queue>`) by the queue name, RQ's keys per job (hash, results, executions) by the job id below,
and bench-jobs' own keys (schedule state, in-flight claims, history, leader, heartbeat, alive keys) by their
prefix, RQ's keys per worker (hash, executions, scheduler, command channel `rq:pubsub:<name>`) by the worker's
name, `<encoded bench>.<uuid4 hex>`. Shared on purpose: RQ's sets `rq:queues` and `rq:workers` (names, which
are namespaced), and `rq:suspended`, which `rq suspend` sets for every bench's workers (bench-jobs never
writes it). So one ACL pattern per kind of key reaches a bench's keys and no other's (rq_acl.py).
"""

from __future__ import annotations

import functools
import hashlib
import uuid

JOB_FUNCTION = "bench_jobs.jobs.runtime.run_job"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def rq_queue_name(bench_id: str, queue: str) -> str:
    """The RQ queue that serves `queue` for one bench (several benches may share a Redis)."""
    return f"{bench_id}:{queue}"


def bench_id_of(rq_queue: str) -> str:
    """The bench id of an RQ queue name."""
    return rq_queue.split(":", 1)[0]


def queue_of(rq_queue: str) -> str:
    """The bench-jobs queue name of an RQ queue name."""
    return rq_queue.split(":", 1)[1] if ":" in rq_queue else rq_queue


@functools.lru_cache(maxsize=4096)
def encode_part(text: str) -> str:
    """Letters and digits kept, every other UTF-8 byte as `_xx`: the result never holds '-'."""
    return "".join(c if c in _SAFE else "".join(f"_{b:02x}" for b in c.encode()) for c in text)


def decode_part(encoded: str) -> str:
    out = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "_":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(encoded[i].encode())
            i += 1
    return out.decode()


# Job ids match RQ's [A-Za-z0-9_-]+ and are collision-free across benches and sites. The bench id and the
# site come first, both encoded (so neither holds '-'), each followed by '-'; RQ's keys `rq:job:<id>`,
# `rq:results:<id>` and `rq:executions:<id>` follow the id, so benches sharing a Redis database never share
# a job, and an id names its bench and site without a look at the job:
#   given id:   <bench>-<site>-<id>                 (the id encoded too, so it never starts with '-')
#   generated:  <bench>-<site>--<uuid hex>
#   scheduled:  <bench>-<site>--s-<job digest>-<slot epoch>
@functools.lru_cache(maxsize=4096)
def site_job_prefix(bench_id: str, site: str) -> str:
    """Every job id of `site` of bench `bench_id` starts with this (and no id of another bench or site)."""
    return f"{encode_part(bench_id)}-{encode_part(site)}-"


def bench_job_prefix(bench_id: str) -> str:
    """Every job id of bench `bench_id` starts with this (and no id of another bench)."""
    return encode_part(bench_id) + "-"


def worker_name(bench_id: str, name: str | None = None) -> str:
    """The name of a worker (or RQ scheduler) of bench `bench_id`: `name` (a new uuid4 hex without one) after
    the bench's prefix, which no other bench's name starts with (encoded, so it holds no '.')."""
    prefix = encode_part(bench_id) + "."
    if name and name.startswith(prefix):
        return name
    return prefix + (name or uuid.uuid4().hex)


def job_id_for(bench_id: str, site: str, job_id: str) -> str:
    """The RQ job id of a caller-given `job_id` of `site`."""
    return site_job_prefix(bench_id, site) + encode_part(job_id)


def new_job_id(bench_id: str, site: str) -> str:
    return f"{site_job_prefix(bench_id, site)}-{uuid.uuid4().hex}"


def scheduled_job_id(bench_id: str, site: str, job_key: str, slot_epoch_s: int) -> str:
    """The RQ job id of one scheduled run: the same (bench, site, job, slot) always gives the same id."""
    return f"{site_job_prefix(bench_id, site)}-s-{job_digest(job_key)}-{slot_epoch_s}"


def job_digest(job_key: str) -> str:
    return hashlib.sha1(job_key.encode(), usedforsecurity=False).hexdigest()[:16]


def owner_of_job_id(rq_job_id: str) -> tuple[str, str] | None:
    """The (bench id, site) encoded in a bench-jobs job id, or None for an id bench-jobs did not make (nor
    one made before job ids carried the bench: `<site>-<id>`, `<site>--...`)."""
    bench, sep, rest = rq_job_id.partition("-")
    site, sep2, tail = rest.partition("-")
    if not (sep and sep2 and bench and site and tail):
        return None
    try:
        owner = decode_part(bench), decode_part(site)
    except (ValueError, UnicodeDecodeError):
        return None
    # Only the one encoding bench-jobs writes counts, so an id is owned exactly when it has the owner's prefix.
    return owner if (encode_part(owner[0]), encode_part(owner[1])) == (bench, site) else None


class Keys:
    """bench-jobs' own keys for one bench."""

    def __init__(self, bench_id: str) -> None:
        self.bench_id = bench_id
        self.prefix = f"bench_jobs:{bench_id}"

    def last_slots(self, site: str) -> str:
        """Hash: scheduled job key -> epoch of the last slot it fired (or first saw)."""
        return f"{self.prefix}:sched:last:{site}"

    def last_runs(self, site: str) -> str:
        """Hash: scheduled job key -> RQ job id of its last run."""
        return f"{self.prefix}:sched:run:{site}"

    def history(self, site: str) -> str:
        """List (newest first, capped) of JSON records of fires, skips and outcomes."""
        return f"{self.prefix}:sched:history:{site}"

    def worker_alive(self, worker_name: str) -> str:
        """Short-lived key a bench-jobs worker refreshes while it lives (RQ's own expires minutes late)."""
        return f"{self.prefix}:alive:{worker_name}"

    @property
    def taken(self) -> str:
        """Hash: RQ job id taken off its queue but not yet started -> name of the worker that took it."""
        return f"{self.prefix}:taken"

    def fair(self, queue: str) -> str:
        """Sorted set: the site lines of `queue` with jobs queued -> their pass (jobs/fair.py)."""
        return f"{self.prefix}:fair:{queue}"

    def fair_line(self, queue: str, line: str) -> str:
        """List: one site's ids queued on `queue`, in their order (jobs/fair.py)."""
        return f"{self.prefix}:fair:{queue}:site:{line}"

    def wake(self, queue: str) -> str:
        """List: one token per push onto `queue`, which an idle worker blocks on."""
        return f"{self.prefix}:wake:{queue}"

    def running(self, line: str) -> str:
        """Sorted set: jobs of a capped site running or taken -> lease end (Redis time, ms)."""
        return f"{self.prefix}:running:{line}"

    @property
    def site_caps(self) -> str:
        """Hash: site line -> max_concurrent_jobs, for sites with a cap."""
        return f"{self.prefix}:caps"

    @property
    def site_weights(self) -> str:
        """Hash: site line -> queue_weight, for sites whose weight is not 1."""
        return f"{self.prefix}:weights"

    @property
    def replicated(self) -> str:
        """A counter written only to WAIT behind it (core.replication.confirm_replicated); expires in a minute."""
        return f"{self.prefix}:replicated"

    @property
    def set_aside(self) -> str:
        """Hash: an id found on a queue that RQ cannot build a job from -> why it was set aside, not run."""
        return f"{self.prefix}:set_aside"

    @property
    def leader(self) -> str:
        return f"{self.prefix}:sched:leader"

    @property
    def heartbeat(self) -> str:
        """String: JSON heartbeat of the scheduler that ticked last (the leader), for doctor."""
        return f"{self.prefix}:sched:heartbeat"

    @property
    def scheduler_processes(self) -> str:
        """Sorted set: `host:pid` of each `schedule` process, leader or standby -> epoch s of its last beat."""
        return f"{self.prefix}:sched:processes"

    def scheduler_clock(self, process: str) -> str:
        """String, expiring with its process's silence: how many seconds the clock of `schedule` process
        `process` (`host:pid`) is ahead of Redis's."""
        return f"{self.prefix}:sched:clock:{process}"

    @property
    def history_counts(self) -> str:
        """Hash: `<status> TAB <site> TAB <event>` -> how many history entries of that kind were ever written (the
        capped history forgets; these counters, read by the Prometheus metrics, only grow)."""
        return f"{self.prefix}:sched:counts"

    def throughput(self, minute_epoch_s: int) -> str:
        """Hash, expiring after a few days: `<finished|failed> TAB <queue>` and `<finished|failed> TAB <queue>
        TAB <site>` -> jobs of that outcome in the minute starting at `minute_epoch_s` (jobs/throughput.py)."""
        return f"{self.prefix}:throughput:{minute_epoch_s}"

    @property
    def tick_spans(self) -> str:
        """List (newest first, capped) of `<first> <last> <run|paused>`: epochs of an unbroken run of ticks
        (scheduler/ticks.py), so `why` can tell a slot no tick covered."""
        return f"{self.prefix}:sched:ticks"

    def site_states(self, site: str) -> str:
        """List (newest first, capped) of `<epoch> <on|disabled|maintenance>`: each change of the site's
        scheduler state as the ticks saw it."""
        return f"{self.prefix}:sched:state:{site}"

    def skip_streaks(self, site: str) -> str:
        """Hash: `<event>|<method>` -> slots skipped in a row because the previous run never finished, and
        `<event>|<method> TAB by` -> the run that blocked the latest of them; reset when the entry fires."""
        return f"{self.prefix}:sched:streak:{site}"

    def last_success(self, site: str) -> str:
        """Hash: `<event>|<method>` -> epoch s at which a scheduled run of that entry last finished."""
        return f"{self.prefix}:sched:success:{site}"

    @property
    def in_flight(self) -> str:
        """Hash: RQ job id of a claimed scheduled run -> JSON {site, key, slot, at}, until the run is queued."""
        return f"{self.prefix}:sched:inflight"
