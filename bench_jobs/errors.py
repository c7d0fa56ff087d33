"""One error root for everything a user can get wrong; the CLI prints it and exits with its code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed, doctor found a problem, or an executed method raised
EXIT_USAGE = 2  # unknown site, bad event, malformed config, bad argument
EXIT_REDIS = 3  # Redis unreachable


class BenchJobsError(Exception):
    """Raised for every expected failure: carries a message, an optional hint and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        """The message and, on a line of its own, the hint: Python code that catches or prints the error (or a
        traceback) sees what to do, not only what went wrong. The CLI prints `message` and `hint` apart."""
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message


class ConfigError(BenchJobsError):
    """Raised when a bench, site, config file, hook or argument is missing or malformed."""

    exit_code = EXIT_USAGE


class RedisUnavailable(BenchJobsError):
    """Raised when the bench's Redis does not answer."""

    exit_code = EXIT_REDIS


class MaybeQueued(RedisUnavailable):
    """Raised when an enqueue's reply was lost and Redis could not tell whether the jobs landed: they may run."""

    def __init__(self, message: str, hint: str | None = None, job_ids: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.job_ids = job_ids or []


class JobError(BenchJobsError):
    """Raised when a job cannot be enqueued or run (bad arguments, method outside the site's apps)."""


class NotReplicated(RedisUnavailable):
    """Raised when a write that acknowledges (an enqueue, a slot claim, a job's outcome) reached the master but
    fewer replicas than `redis_queue_wait_replicas` confirmed it in time: a failover now could lose it."""

    def __init__(self, message: str, hint: str | None = None, job_ids: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.job_ids = job_ids or []
