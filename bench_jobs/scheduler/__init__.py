"""The scheduler: per-site claims of due slots and the sending of claimed runs, the leader lease, the tick,
the loop of `bench-jobs schedule`, and the schedule view (`show-schedule`, `trigger-scheduler-event`).

Imports `core`, `jobs` and `errors`.
"""
