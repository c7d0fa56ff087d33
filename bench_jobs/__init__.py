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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench_jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
