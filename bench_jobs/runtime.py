"""What runs inside a site: `execute`, and the function every RQ job of bench-jobs calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .bench import Bench
from .context import call_with_job_hooks, site_context, site_hooks
from .errors import JobError
from .hooks import import_path


def execute_in_site(bench: Bench, site: str, path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call `path` for `site` with before/after_job hooks; JobError (exit 1) carrying the cause if it raises."""
    with site_context(site, bench) as context:
        hooks = site_hooks(context)
        hooks.raise_problems()
        func = import_path(path)
        try:
            return call_with_job_hooks(hooks, func, args, kwargs)
        except Exception as exc:
            raise JobError(
                f"{path} raised {type(exc).__name__}: {exc}", hint="Run again with --verbose for the traceback."
            ) from exc
