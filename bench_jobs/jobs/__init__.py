"""Producing and reading jobs: enqueue and transactions, delayed jobs, queues and the RQ job class, what a job runs,
liveness, listings, purge, and the run history that workers write.

Imports `core` and `errors` only.
"""
