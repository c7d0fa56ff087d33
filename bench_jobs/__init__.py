"""bench-jobs: Frappe-bench-style scheduler and background jobs for any multi-tenant Python app.

The public API is imported lazily so that `bench-jobs --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.version import __version__ as __version__

_EXPORTS = {
    "BenchJobsError": "errors",
    "ConfigError": "errors",
    "JobError": "errors",
    "RedisUnavailable": "errors",
    "current_site": "core.context",
    "site_config": "core.context",
    "site_context": "core.context",
    "logger": "core.context",
    "enqueue": "jobs.enqueue",
    "enqueue_doc": "jobs.enqueue",
    "enqueue_at": "jobs.delayed",
    "enqueue_in": "jobs.delayed",
    "transaction": "jobs.enqueue",
    "begin": "jobs.enqueue",
    "commit": "jobs.enqueue",
    "rollback": "jobs.enqueue",
    "set_after_commit_handler": "jobs.enqueue",
    "is_job_enqueued": "jobs.lookup",
    "get_job_status": "jobs.lookup",
    "get_jobs": "jobs.lookup",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .core.context import current_site as current_site
    from .core.context import logger as logger
    from .core.context import site_config as site_config
    from .core.context import site_context as site_context
    from .errors import BenchJobsError as BenchJobsError
    from .errors import ConfigError as ConfigError
    from .errors import JobError as JobError
    from .errors import RedisUnavailable as RedisUnavailable
    from .jobs.delayed import enqueue_at as enqueue_at
    from .jobs.delayed import enqueue_in as enqueue_in
    from .jobs.enqueue import begin as begin
    from .jobs.enqueue import commit as commit
    from .jobs.enqueue import enqueue as enqueue
    from .jobs.enqueue import enqueue_doc as enqueue_doc
    from .jobs.enqueue import rollback as rollback
    from .jobs.enqueue import set_after_commit_handler as set_after_commit_handler
    from .jobs.enqueue import transaction as transaction
    from .jobs.lookup import get_job_status as get_job_status
    from .jobs.lookup import get_jobs as get_jobs
    from .jobs.lookup import is_job_enqueued as is_job_enqueued


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench_jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
