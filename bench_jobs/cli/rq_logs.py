"""What a worker prints without --verbose: the lines a user reads (a job taken, `Job OK`, warnings and failures,
what it listens on, a warm shutdown), not RQ's housekeeping (subscribing to channels, scheduler locks,
cleaning registries). RQ sets its loggers' levels itself when a worker starts, so a filter does the choosing."""

from __future__ import annotations

import logging

QUIETED_LOGGERS = ("rq.worker", "rq.scheduler", "rq.worker_pool")
# RQ's own message formats (record.msg) worth a line on the console, all logged by "rq.worker" at INFO.
KEPT_RQ_MESSAGES = frozenset(
    {
        "Worker %s: %s: %s (%s)",  # a job taken (`default: <description> (<id>)`), and `default: Job OK (<id>)`
        "Worker %s: %s: %s",  # a job taken, when jobs are logged without their description
        "*** Listening on %s...",
        "Worker %s [PID %d]: warm shut down requested",
    }
)


class RqChatterFilter(logging.Filter):
    """Lets through warnings and errors, and RQ's job lines; drops RQ's other INFO and DEBUG records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or (record.name == "rq.worker" and record.msg in KEPT_RQ_MESSAGES)


def quiet_rq_chatter(verbose: bool) -> None:
    """Without --verbose, filter RQ's worker, scheduler and pool loggers (their children, bench-jobs' own
    `rq.worker.bench_jobs`, are not filtered). Forked workers and work-horses inherit the filters."""
    if verbose:
        return
    for name in QUIETED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RqChatterFilter) for existing in logger.filters):
            logger.addFilter(RqChatterFilter())
