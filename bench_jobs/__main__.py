"""`python -m bench_jobs` and the `bench-jobs` script."""

import gc


def run() -> None:
    """The CLI, with the cyclic garbage collector paused from the first import on: start-up creates hundreds of
    thousands of objects and frees almost none, so a collection then costs time and finds nothing. The
    collector comes back before a long-running command runs (cli.main.resume_gc)."""
    gc.disable()
    from .cli.main import run as run_cli

    run_cli(gc_paused=True)


if __name__ == "__main__":
    run()
