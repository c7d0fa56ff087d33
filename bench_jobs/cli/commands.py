"""The table of commands: name -> where it lives and its short help. Nothing here imports a command's module:
`bench-jobs doctor` imports doctor's module only, and `--help` lists every command from this table alone.

To add a command: write its function (or a Typer sub-app, for a group such as `setup`) in a module of this
package and add one line below, in the place it should take in `--help`. The short help is the first sentence
of the command's help (its docstring); tests/test_cli_lazy.py checks that the two agree.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    target: str  # "module:attribute" in bench_jobs.cli: a command function, or a typer.Typer for a group
    help: str  # the first sentence of the command's help, as `--help` lists it


COMMANDS: dict[str, Entry] = {
    "enable-scheduler": Entry(
        "sites_cmd:enable_scheduler", "Enable the scheduler for the site (or every site with --site all)."
    ),
    "disable-scheduler": Entry(
        "sites_cmd:disable_scheduler",
        "Disable the scheduler for the site (or every site with --site all); queued jobs still run.",
    ),
    "init": Entry(
        "sites_cmd:init",
        "Create a bench with one site (scheduler enabled) and a demo app whose hooks schedule a few jobs.",
    ),
    "new-site": Entry("sites_cmd:new_site", "Create a site in the bench."),
    "execute": Entry(
        "execute_cmd:execute",
        "Call a function in the site's context (config loaded, before_job/after_job run); print its result as JSON.",
    ),
    "worker": Entry("worker_cmd:worker", "Run jobs of every site from the bench's queues."),
    "show-queue": Entry(
        "queue_cmds:show_queue",
        "Show every queue of the bench: queued, started (and orphaned), failed, finished, scheduled and deferred "
        "jobs, and the live workers serving it; then each site with jobs queued or a `max_concurrent_jobs` cap: "
        "its queued jobs, and its running jobs against its cap.",
    ),
    "show-pending-jobs": Entry(
        "queue_cmds:show_pending_jobs",
        "Show the site's pending jobs: running (or orphaned: its worker died), queued, and scheduled (retries and "
        "delayed jobs, with their due time).",
    ),
    "show-failed-jobs": Entry(
        "queue_cmds:show_failed_jobs",
        "Show the site's failed jobs, newest first, with the last line of each error; --job-id shows one job "
        "with its full traceback.",
    ),
    "purge-jobs": Entry(
        "queue_cmds:purge_jobs",
        "Delete the site's queued and scheduled jobs (only that site's; running jobs are left to finish), or "
        "with --failed its failed jobs.",
    ),
    "requeue-failed-jobs": Entry(
        "queue_cmds:requeue_failed_jobs",
        "Put the site's failed jobs back on their queues (at the end) to run again.",
    ),
    "doctor": Entry(
        "doctor_cmd:doctor",
        "Check Redis, the scheduler, workers (and `rq suspend`), stuck and failed jobs, hooks, time zones and "
        "config permissions.",
    ),
    "schedule": Entry(
        "schedule_cmd:schedule",
        "Run the scheduler: tick on wall-clock boundaries of scheduler_tick_interval, firing each due job once.",
    ),
    "trigger-scheduler-event": Entry(
        "schedule_cmd:trigger_scheduler_event",
        "Enqueue now every scheduled job of EVENT (or the one scheduled job with that method path) and print "
        "the job ids.",
    ),
    "show-schedule": Entry(
        "schedule_cmd:show_schedule",
        "List each scheduled job: event, method, queue, cron in words, last run and status, next run (in the "
        "site's time zone; with seconds when the tick is under a minute).",
    ),
    "why": Entry(
        "why_cmd:why",
        "Explain the last slots of each scheduled entry of METHOD: fired (its job and outcome), skipped (why: "
        "its previous run still queued or running, with that run's id and age; the site's scheduler disabled; "
        "the site in maintenance; the bench paused; a hook problem), not seen (no scheduler tick covered the "
        "slot: the gap), or pending; then its next slot.",
    ),
    "start": Entry(
        "procs_cmd:start",
        "Run the bench in the foreground as `bench start` does: a Redis at redis_queue when none answers there, "
        "the scheduler and a worker per queue, each process's output prefixed and coloured; with the web extra "
        "installed, also the dashboard on 127.0.0.1 (dashboard_port, else 11380, else a free port), whose URL "
        "it prints.",
    ),
    "set-maintenance-mode": Entry(
        "scheduler_cmds:set_maintenance_mode",
        "Put the site (or every site with --site all) in maintenance mode, or take it out: while on, the "
        "scheduler skips the site and `doctor` says so; jobs already queued still run.",
    ),
    "use": Entry(
        "config_cmds:use",
        "Make SITE the default site: commands without --site (and without $BENCH_JOBS_SITE) act on it.",
    ),
    "set-config": Entry(
        "config_cmds:set_config",
        "Set KEY to VALUE in the site's site_config.toml (every site with --site all), or bench-wide with --global.",
    ),
    "show-config": Entry(
        "config_cmds:show_config",
        "Show the settings the site runs with (every site with --site all), where each comes from (site, "
        "common, environment or default), passwords redacted.",
    ),
    "ready-for-migration": Entry(
        "migration_cmd:ready_for_migration",
        "Exit 0 when the site (every site with --site all) has no pending job (queued, running, a scheduled "
        "retry or deferred), else exit 1 naming them, as Frappe's bench does before `migrate`.",
    ),
    "metrics": Entry(
        "metrics_cmd:metrics",
        "Print the bench's Prometheus metrics once, in the text exposition format: jobs by queue, site and "
        "state, the oldest queued job's age, workers by state, job durations, the scheduler's last tick and "
        "its fires, skips and failures.",
    ),
    "dashboard": Entry(
        "dashboard_cmd:dashboard",
        "Serve the web dashboard: queues, workers, each site's jobs and schedule, doctor's checks.",
    ),
    "setup": Entry(
        "procs_cmd:setup_app",
        "Write process configs for the bench's scheduler and queues (built-in and custom).",
    ),
    "scheduler": Entry(
        "scheduler_cmds:scheduler_app",
        "See and switch the bench's scheduler: status per site; pause / resume for the whole bench.",
    ),
    "create-rq-users": Entry(
        "rq_users_cmd:create_rq_users",
        "Create the bench's own Redis ACL user, limited to its keys and channels, and log the bench in as it.",
    ),
}

# Short read-only commands, bounded by what they read: run from the `bench-jobs` script, they keep the cyclic
# garbage collector paused to their end (cli.main.resume_gc). Every other command gets it back before it runs.
SHORT_COMMANDS = frozenset(
    {
        "show-queue",
        "show-pending-jobs",
        "show-failed-jobs",
        "doctor",
        "show-schedule",
        "why",
        "show-config",
        "ready-for-migration",
        "metrics",
    }
)
