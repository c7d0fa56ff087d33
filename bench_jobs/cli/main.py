"""The Typer app, its global options, and the one place where errors become exit codes."""

from __future__ import annotations

import functools
import gc
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any, get_type_hints

import typer
from typer.core import TyperGroup

from ..errors import EXIT_FAILED, EXIT_REDIS, EXIT_USAGE, BenchJobsError

try:  # typer 0.26+ ships its own copy of click, and raises that copy's usage errors
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException  # type: ignore[assignment]

from . import state
from .commands import COMMANDS, SHORT_COMMANDS
from .completion import complete_site
from .lazy import Command, LazyGroup, import_target

SITE_HELP = "Site name, or 'all' for every site (default: $BENCH_JOBS_SITE, then sites/currentsite.txt)."
BENCH_HELP = (
    "Bench folder (default: $BENCH_JOBS_BENCH, then the nearest "
    "folder at or above the working directory with sites/common_site_config.toml)."
)


class _Commands(LazyGroup):
    def load(self, name: str) -> Command:
        return _command(name)


app = typer.Typer(
    name="bench-jobs",
    cls=_Commands,
    help="Scheduler and background jobs for multi-tenant Python apps (Frappe bench style, on Redis + RQ).\n\n"
    "Examples:\n\n"
    "  bench-jobs init mybench && cd mybench\n\n"
    "  bench-jobs --site site1.local execute demo_app.tasks.greet --kwargs \"{'name': 'Ada'}\"\n\n"
    "  bench-jobs --site all enable-scheduler",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _show_version(value: bool) -> None:
    if value:
        from ..core.version import __version__

        print(f"bench-jobs {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    site: str = typer.Option(None, "--site", help=SITE_HELP, autocompletion=complete_site),
    bench: str = typer.Option(None, "--bench", help=BENCH_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and more detail."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
    ),
) -> None:
    state.options.site = state.options.bench = None
    _set_location(site, bench)
    state.options.verbose = verbose


def _set_location(site: str | None, bench: str | None) -> None:
    """Record --site / --bench; given after the command too, they override those given before it."""
    if site is not None:
        from ..core.bench import validate_site_selector

        state.options.site = validate_site_selector(site, "--site")
    if bench is not None:
        state.options.bench = bench


def _with_location_options(callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback` taking --site and --bench as well, so `bench-jobs doctor --site x` works as people type it.
    Its annotations are evaluated here, once, so Typer reads the wrapper's at no further cost."""
    hints = {**get_type_hints(callback), "command_site": str | None, "command_bench": str | None}
    site_option = typer.Option(None, "--site", help=SITE_HELP, autocompletion=complete_site)
    bench_option = typer.Option(None, "--bench", help=BENCH_HELP)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option)
        for name, option in (("command_site", site_option), ("command_bench", bench_option))
    ]
    parameters = [*inspect.signature(callback).parameters.values(), *extra]

    @functools.wraps(callback)
    def wrapper(*args: Any, command_site: str | None = None, command_bench: str | None = None, **kwargs: Any) -> Any:
        _set_location(command_site, command_bench)
        return callback(*args, **kwargs)

    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(annotation=hints.get(p.name, p.annotation)) for p in parameters],
        return_annotation=hints.get("return", inspect.Signature.empty),
    )
    wrapper.__annotations__ = hints
    return wrapper


def _add_location_options(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None:
            command.callback = _with_location_options(command.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _add_location_options(group.typer_instance)


_add_location_options(app)  # commands registered on `app` itself; those of COMMANDS get them in _command
_LOADED: dict[str, Command] = {}


def _command(name: str) -> Command:
    """The click command of COMMANDS[name], made once per process: its module imported, its callback (or
    each of its group's) given --site and --bench, and turned into a click command by Typer."""
    if name not in _LOADED:
        target = import_target(COMMANDS[name].target)
        holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
        holder.callback()(_no_options)
        if isinstance(target, typer.Typer):
            _add_location_options(target)
            holder.add_typer(target, name=name)
        else:
            holder.command(name)(_with_location_options(target))
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        _LOADED[name] = group.commands[name]
    if name not in SHORT_COMMANDS:
        resume_gc()
    return _LOADED[name]


def resume_gc() -> None:
    """Turn the cyclic garbage collector back on when the entry point paused it (bench_jobs.__main__), before
    a command that may run long or run user code: the objects of start-up are frozen first, so that no
    collection walks them again. The short read-only commands (SHORT_COMMANDS) run to their end without it."""
    if state.options.gc_paused:
        state.options.gc_paused = False
        gc.freeze()
        gc.enable()


def _no_options() -> None:
    """The callback of the group that _command has Typer build around one command (it never runs)."""


def _is_redis_error(exc: BaseException) -> bool:
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(exc, redis_errors.RedisError)


def _is_redis_down(exc: BaseException) -> bool:
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError))


def _report(message: str, hint: str | None, cause: BaseException | None, exit_code: int) -> int:
    """Print the error on stderr (with the traceback under --verbose) and, under --json, also as one JSON
    document on stdout, {"error", "hint", "exit_code"}, so a script reading stdout always gets JSON."""
    err = state.error_console()
    if state.options.verbose and cause is not None:
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    err.print(f"Error: {message}", markup=False, soft_wrap=True)
    if hint:
        err.print(f"Hint: {hint}", markup=False, soft_wrap=True)
    if state.options.json and not state.options.json_printed:
        state.print_json({"error": message, "hint": hint, "exit_code": exit_code})
    return exit_code


def _wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for --json (before any `--`, which ends the options)."""
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failed, 2 usage/config error, 3 Redis unreachable."""
    state.options.json = _wants_json(sys.argv[1:] if argv is None else argv)
    state.options.json_printed = False
    try:
        result = app(args=argv, prog_name="bench-jobs", standalone_mode=False)
    except BenchJobsError as exc:
        return _report(exc.message, exc.hint, exc.__cause__ or exc, exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        code = int(exc.exit_code) if exc.exit_code else EXIT_USAGE
        if state.options.json:
            return _report(exc.format_message(), "Run with --help for the usage.", None, code)
        exc.show()
        return code
    except typer.Abort:
        state.error_console().print("Aborted: nothing changed.")
        if state.options.json:
            state.print_json({"error": "Aborted: nothing changed.", "hint": None, "exit_code": EXIT_FAILED})
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_redis_error(exc):
            from ..core.connection import auth_failure, is_auth_failure

            if is_auth_failure(exc):
                failure = auth_failure(exc)
                return _report(failure.message, failure.hint, exc, failure.exit_code)
        if _is_redis_down(exc):
            from ..core.connection import describe_connection_error, unreachable_hint

            return _report(
                f"Redis does not answer: {describe_connection_error(exc)}", unreachable_hint(), exc, EXIT_REDIS
            )
        return _report(
            f"unexpected {type(exc).__name__}: {exc}",
            None if state.options.verbose else "Run again with --verbose for the traceback.",
            exc,
            EXIT_FAILED,
        )
    return result if isinstance(result, int) else 0


def run(gc_paused: bool = False) -> None:
    """Exit with main()'s code; `gc_paused`: the caller disabled the cyclic garbage collector (resume_gc)."""
    state.options.gc_paused = gc_paused
    code = main()
    gc.freeze()  # the exit then skips a full collection over every object of every module loaded
    sys.exit(code)
