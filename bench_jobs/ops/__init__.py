"""Operating a bench: doctor, `start`, process configs (Procfile, supervisor, systemd), the local Redis for
development, and scaffolding of benches and sites.

May import `core`, `jobs`, `scheduler` and `errors`.
"""
