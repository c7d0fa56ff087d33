"""Global options and the helpers every command uses to reach the bench, its sites and stdout."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ..core.bench import Bench


@dataclass
class GlobalOptions:
    site: str | None = None
    bench: str | None = None
    verbose: bool = False
    json: bool = False  # --json on the command line: errors also go to stdout as JSON
    json_printed: bool = False  # the command already printed its JSON document
    gc_paused: bool = False  # the entry point disabled the cyclic GC (main.resume_gc turns it back on)


options = GlobalOptions()


def bench() -> Bench:
    """The bench the command acts on, made importable and the default for site contexts."""
    from ..core.bench import find_bench
    from ..core.context import use_bench

    found = find_bench(options.bench)
    use_bench(found)
    return found


def sites(found: Bench) -> list[str]:
    """The sites selected by --site / $BENCH_JOBS_SITE / currentsite.txt (`all` for every site)."""
    return found.resolve_sites(options.site)


def every_site(found: Bench) -> bool:
    """Whether --site (or its default) selects `all`: then bench-wide views include jobs of no site."""
    from ..core.bench import ALL_SITES

    selector = options.site if options.site is not None else found.default_site()
    return selector == ALL_SITES


def print_json(document: Any) -> None:
    """One JSON document on stdout and nothing else there: standard JSON, so a NaN or an infinity (which
    Python would write as NaN / Infinity, which no JSON parser reads) is an error (exit 1), not output."""
    from ..errors import BenchJobsError

    try:
        text = json.dumps(document, default=str, indent=2, allow_nan=False)
    except ValueError:
        raise BenchJobsError(
            "The result holds a number JSON cannot carry (NaN or Infinity); nothing was printed.",
            hint="Return finite numbers, or None where there is no value.",
        ) from None
    sys.stdout.write(text + "\n")
    options.json_printed = True


def console() -> Console:
    """stdout for human output: text is data, never markup or an emoji code (a job name holding `[/x]`,
    `[link=...]` or `:fire:` prints as it is; a command that colours its own words passes markup=True), and
    control characters in it print as their escapes (`\x1b`), so no job name or error drives the terminal."""
    return _safe_console(stderr=False)


def error_console() -> Console:
    """stderr, as console()."""
    return _safe_console(stderr=True)


def _safe_console(stderr: bool) -> Console:
    from rich.console import Console

    from ..core.text import printable

    class SafeConsole(Console):
        def render_str(self, text: str, **options: Any) -> Any:
            return super().render_str(printable(text, keep="\n\t"), **options)

    return SafeConsole(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


def confirm(question: str, yes: bool, refusal: str) -> bool:
    """True when the user agreed (or passed --yes); ConfigError (exit 2) when stdin has nobody to ask."""
    import typer

    from ..errors import ConfigError

    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{refusal}: stdin is not a terminal.", hint="Pass --yes.")
    return bool(typer.confirm(question, default=False, err=True))
