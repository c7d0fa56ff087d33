"""A Redis ACL user per bench (Frappe's `use_rq_auth`, `rq_username`, `rq_password`): the credentials every
process of the bench connects with, and the ACL rules that limit that user to the bench's own keys.

Every key and channel a bench touches carries its bench id (keys.py): RQ's per-queue keys by the queue name
`<bench>:<queue>`, RQ's per-job keys by the job id's prefix `<encoded bench>-`, RQ's per-worker keys and
command channel by the worker's name `<encoded bench>.<uuid>`, bench-jobs' own keys by `bench_jobs:<bench>:`.
One pattern per kind of key covers a bench; a ':', '-' or '.' right after the id keeps bench `a` off bench
`ab`'s keys. Shared by every bench on the Redis, because RQ keeps them so: the sets `rq:queues` and
`rq:workers` (names only, read and written) and `rq:suspended` (read only, where Redis 7 can say so).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .keys import encode_part

# RQ's keys named `rq:<kind>:<queue name>` (RQ 3.0: queue lists and their `:intermediate` lists, registries,
# the cleaning and scheduler locks, the per-queue worker sets).
RQ_QUEUE_KINDS = (
    "queue",
    "wip",
    "finished",
    "failed",
    "deferred",
    "scheduled",
    "canceled",
    "ready",
    "registry",
    "clean_registries",
    "scheduler-lock",
    "workers",
)
# RQ's keys named by a job id: the hash (and its `:dependents`), results, executions, and the dependencies set,
# which RQ 3.0 names `rq:job::<id>:dependencies` (its prefix `rq:job:` and a ':') and deletes with a job.
RQ_JOB_KINDS = ("job", "job:", "results", "execution", "executions")
# RQ's keys named by a worker's name (its hash and `:executions`) and its scheduler's name.
RQ_WORKER_KINDS = ("worker", "scheduler")
# Server-wide commands a bench must not run (on top of Redis's @admin and @dangerous categories): RANDOMKEY
# names any key; SCRIPT FLUSH, SCRIPT KILL and FUNCTION act on every client's scripts; SCRIPT DEBUG SYNC
# stops the whole server while it debugs; CLIENT TRACKING (BCAST PREFIX) would stream the names of every key
# another bench writes, and PUBSUB CHANNELS / SHARDCHANNELS list other benches' channels.
DENIED_COMMANDS = (
    "randomkey",
    "script|flush",
    "script|kill",
    "script|debug",
    "function",
    "client|tracking",
    "pubsub|channels",
    "pubsub|shardchannels",
)
# INFO is @dangerous but shows no key or value: doctor reads memory and persistence from it, and workers the
# uptime that tells a Redis restart (jobs/liveness.py).
ALLOWED_COMMANDS = ("info",)
_GLOB_SPECIAL = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """`text` as a literal in a Redis glob pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def rq_username(bench_id: str) -> str:
    """The ACL user of a bench (never Redis's `default`, whatever the bench id)."""
    return f"bench-jobs-{bench_id}"


def key_patterns(bench_id: str) -> list[str]:
    """The ACL key rules (`~...`, `%R~...`) that reach the keys of bench `bench_id` and the shared ones."""
    bench, encoded = glob_escape(bench_id), glob_escape(encode_part(bench_id))
    patterns = [f"~rq:{kind}:{bench}:*" for kind in RQ_QUEUE_KINDS]
    patterns += [f"~rq:{kind}:{encoded}-*" for kind in RQ_JOB_KINDS]
    patterns += [f"~rq:{kind}:{encoded}.*" for kind in RQ_WORKER_KINDS]
    patterns += [f"~bench_jobs:{bench}:*", "~rq:queues", "~rq:workers"]
    # `rq suspend` pauses every worker on the Redis: a bench may see it, not set it (create-rq-users needs
    # Redis 7 for read-only patterns).
    patterns.append("%R~rq:suspended")
    return patterns


def channel_patterns(bench_id: str) -> list[str]:
    """The ACL channel rules: RQ's command channel of each of the bench's workers (`rq:pubsub:<name>`)."""
    return [f"&rq:pubsub:{glob_escape(encode_part(bench_id))}.*"]


def command_rules() -> list[str]:
    return [
        "+@all",
        "-@admin",
        "-@dangerous",
        *(f"-{c}" for c in DENIED_COMMANDS),
        *(f"+{c}" for c in ALLOWED_COMMANDS),
    ]


def acl_rules(bench_id: str) -> list[str]:
    """Every rule after the user's name and password: keys, channels, commands (ACL SETUSER and aclfile)."""
    return [
        "resetkeys",
        *key_patterns(bench_id),
        "resetchannels",
        *channel_patterns(bench_id),
        *command_rules(),
    ]


def rq_credentials(common: dict[str, Any], source: str = "common_site_config.toml") -> dict[str, str]:
    """The username and password every process connects with (over the Redis URL's own): the bench's ACL
    user when `use_rq_auth` is true, else nothing. ConfigError when it is on but the user is incomplete."""
    if not common.get("use_rq_auth"):
        return {}
    username, password = common.get("rq_username"), common.get("rq_password")
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        raise ConfigError(
            f"{source}: use_rq_auth is true but rq_username or rq_password is missing.",
            hint="Run `bench-jobs create-rq-users` (it writes both), or set use_rq_auth to false.",
        )
    return {"username": username, "password": password}
