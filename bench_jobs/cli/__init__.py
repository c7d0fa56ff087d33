"""The `bench-jobs` command line: parse, call the core, render, exit with a documented code.

The top layer: may import any part of bench_jobs, and no part imports it.
"""

from .main import app, main, run

__all__ = ["app", "main", "run"]
