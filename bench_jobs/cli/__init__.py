"""The `bench-jobs` command line: parse, call the core, render, exit with a documented code."""

from .main import app, main, run

__all__ = ["app", "main", "run"]
