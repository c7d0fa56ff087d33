"""bench-jobs: Frappe-bench-style scheduler and background jobs for any multi-tenant Python app.

The public API is imported lazily so that `bench-jobs --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BenchJobsError": "errors",
    "ConfigError": "errors",
    "JobError": "errors",
    "RedisUnavailable": "errors",
    "current_site": "context",
    "site_config": "context",
    "site_context": "context",
    "logger": "context",
    "enqueue": "jobs",
    "enqueue_doc": "jobs",
    "transaction": "jobs",
    "begin": "jobs",
    "commit": "jobs",
    "rollback": "jobs",
    "set_after_commit_handler": "jobs",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from .context import current_site as current_site
    from .context import logger as logger
    from .context import site_config as site_config
    from .context import site_context as site_context
    from .errors import BenchJobsError as BenchJobsError
    from .errors import ConfigError as ConfigError
    from .errors import JobError as JobError
    from .errors import RedisUnavailable as RedisUnavailable
    from .jobs import begin as begin
    from .jobs import commit as commit
    from .jobs import enqueue as enqueue
    from .jobs import enqueue_doc as enqueue_doc
    from .jobs import rollback as rollback
    from .jobs import set_after_commit_handler as set_after_commit_handler
    from .jobs import transaction as transaction


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench_jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
