"""The ground floor: the bench and its sites on disk, typed config and its writer, apps' hooks, the site
context, Redis keys and the connection, and cron and slot arithmetic (pure, with its own Vixie cron parser).

Imports nothing of bench_jobs but `errors`: every other part stands on this one.
"""
