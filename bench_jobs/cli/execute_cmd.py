"""`execute`: call a function inside a site's context and print its result as JSON."""

from __future__ import annotations

import ast
import contextlib
import json
import math
import sys
from typing import Any

import typer

from . import state

MAX_NESTING = 100  # deeper than any real argument; far deeper would exhaust Python's recursion on the way


def parse_literal(text: str, option: str) -> Any:
    """JSON, else a Python literal (`"{'id': 'X'}"`), parsed with ast.literal_eval, never eval; nested at most
    MAX_NESTING deep (ConfigError, not a RecursionError from the parser or from serialising it later)."""
    from ..errors import ConfigError

    if _nesting(text) > MAX_NESTING:
        raise ConfigError(
            f"{option} is nested more than {MAX_NESTING} deep.",
            hint="Pass flat arguments (IDs, names): the job loads what it needs.",
        )
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ConfigError(
                f"{option} is neither JSON nor a Python literal: {text!r}",
                hint=f"""Example: {option} "{{'record_id': 'TEST-001'}}" """.rstrip(),
            ) from None
    if not _json_safe(value):
        raise ConfigError(
            f"{option} holds a number JSON cannot carry (NaN, Infinity, or one as big as 1e999) or a complex one.",
            hint="Pass finite numbers, or the value as a string.",
        )
    return value


def _json_safe(value: Any) -> bool:
    """Whether every number in `value` is one JSON can carry (finite, not complex)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, complex):
        return False
    if isinstance(value, dict):
        return all(_json_safe(key) and _json_safe(item) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_json_safe(item) for item in value)
    return True


def _nesting(text: str) -> int:
    """An upper bound of how deep `text` nests brackets (brackets inside strings count too: a bound is enough)."""
    depth = deepest = 0
    for char in text:
        if char in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]})":
            depth -= 1
    return deepest


def execute(
    path: str = typer.Argument(..., help="Dotted path of the function, e.g. my_app.tasks.rebuild."),
    args: str = typer.Option(None, "--args", help="Positional arguments: a JSON or Python list."),
    kwargs: str = typer.Option(None, "--kwargs", help="Keyword arguments: a JSON or Python dict."),
) -> None:
    """Call a function in the site's context (config loaded, before_job/after_job run); print its result as JSON.

    Exit 1 when the function raises (the traceback shows with --verbose), 2 when it cannot be found or the
    site's before_job/after_job hooks are broken; any other hook problem is a warning on stderr.
    Whatever the function prints goes to stderr, so stdout holds only the JSON result.

    Example:

    \b
      bench-jobs --site site1.local execute demo_app.tasks.greet --kwargs "{'name': 'Ada'}"
    """
    from ..core.bench import ALL_SITES
    from ..errors import ConfigError
    from ..jobs.runtime import execute_in_site

    call_args = parse_literal(args, "--args") if args is not None else []
    call_kwargs = parse_literal(kwargs, "--kwargs") if kwargs is not None else {}
    if not isinstance(call_args, (list, tuple)):
        raise ConfigError(
            f"--args must be a list, got {type(call_args).__name__}.", hint="Example: --args '[\"a\", 1]'"
        )
    if not isinstance(call_kwargs, dict) or not all(isinstance(k, str) for k in call_kwargs):
        raise ConfigError("--kwargs must be a dict with string keys.", hint="""Example: --kwargs "{'name': 'Ada'}" """)
    found = state.bench()
    sites = state.sites(found)
    results = {}
    for site in sites:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON result and nothing else
            executed = execute_in_site(found, site, path, list(call_args), call_kwargs)
        for warning in executed.warnings:
            state.error_console().print(f"Warning: {site}: {warning}", markup=False)
        results[site] = executed.result
    state.print_json(results if state.options.site == ALL_SITES else results[sites[0]])
