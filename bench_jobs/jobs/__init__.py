"""Background jobs: enqueue and transactions, queues and the RQ job class, the worker (with its outage
handling and recovery of dead workers' jobs), what a job runs, liveness, listings, purge, and the run
history that workers write.

Imports `core` and `errors` only.
"""
