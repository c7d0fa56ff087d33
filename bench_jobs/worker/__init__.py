"""Taking and running jobs: the fair take across sites (with per-site caps and wake-up without polling), the
work-horses, riding out Redis outages, recovery of dead workers' jobs, due retries and delayed jobs, and the
`bench-jobs worker` process itself.

Imports `core`, `jobs` and `errors`.
"""
