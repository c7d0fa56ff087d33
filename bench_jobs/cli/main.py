"""The Typer app, its global options, and the one place where errors become exit codes."""

from __future__ import annotations

import sys
import traceback

import typer

from ..errors import EXIT_FAILED, EXIT_REDIS, EXIT_USAGE, BenchJobsError

try:  # typer 0.26+ ships its own copy of click, and raises that copy's usage errors
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException  # type: ignore[assignment]

from . import dashboard_cmd, doctor_cmd, execute_cmd, procs_cmd, queue_cmds, schedule_cmd, sites_cmd, state, worker_cmd

app = typer.Typer(
    name="bench-jobs",
    help="Scheduler and background jobs for multi-tenant Python apps (Frappe bench style, on Redis + RQ).\n\n"
    "Examples:\n\n"
    "  bench-jobs init mybench && cd mybench\n\n"
    "  bench-jobs --site site1.local execute demo_app.tasks.greet --kwargs \"{'name': 'Ada'}\"\n\n"
    "  bench-jobs --site all enable-scheduler",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def global_options(
    site: str = typer.Option(
        None,
        "--site",
        help="Site name, or 'all' for every site (default: $BENCH_JOBS_SITE, then sites/currentsite.txt).",
    ),
    bench: str = typer.Option(
        None,
        "--bench",
        help="Bench folder (default: $BENCH_JOBS_BENCH, then the nearest "
        "folder at or above the working directory with sites/common_site_config.toml).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and more detail."),
) -> None:
    if site is not None:
        from ..core.bench import validate_site_selector

        site = validate_site_selector(site, "--site")
    state.options.site = site
    state.options.bench = bench
    state.options.verbose = verbose


sites_cmd.register(app)
execute_cmd.register(app)
worker_cmd.register(app)
queue_cmds.register(app)
doctor_cmd.register(app)
schedule_cmd.register(app)
procs_cmd.register(app)
dashboard_cmd.register(app)


def _is_redis_error(exc: BaseException) -> bool:
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(exc, redis_errors.RedisError)


def _is_redis_down(exc: BaseException) -> bool:
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError))


def _report(message: str, hint: str | None, cause: BaseException | None) -> None:
    err = state.error_console()
    if state.options.verbose and cause is not None:
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    err.print(f"Error: {message}", markup=False, soft_wrap=True)
    if hint:
        err.print(f"Hint: {hint}", markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failed, 2 usage/config error, 3 Redis unreachable."""
    try:
        result = app(args=argv, prog_name="bench-jobs", standalone_mode=False)
    except BenchJobsError as exc:
        _report(exc.message, exc.hint, exc.__cause__ or exc)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        exc.show()
        return int(exc.exit_code) if exc.exit_code else EXIT_USAGE
    except typer.Abort:
        state.error_console().print("Aborted: nothing changed.")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_redis_error(exc):
            from ..core.connection import auth_failure, is_auth_failure

            if is_auth_failure(exc):
                failure = auth_failure(exc)
                _report(failure.message, failure.hint, exc)
                return failure.exit_code
        if _is_redis_down(exc):
            from ..core.connection import describe_connection_error, unreachable_hint

            _report(f"Redis does not answer: {describe_connection_error(exc)}", unreachable_hint(), exc)
            return EXIT_REDIS
        _report(
            f"unexpected {type(exc).__name__}: {exc}",
            None if state.options.verbose else "Run again with --verbose for the traceback.",
            exc,
        )
        return EXIT_FAILED
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
