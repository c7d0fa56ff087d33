from bench_jobs.cli import run

run()
