"""`metrics`: the bench's Prometheus metrics, printed once (the dashboard serves the same on /metrics)."""

from __future__ import annotations

import sys

from . import state


def metrics() -> None:
    """Print the bench's Prometheus metrics once, in the text exposition format: jobs by queue, site and state,
    the oldest queued job's age, workers by state, job durations, the scheduler's last tick and its fires,
    skips and failures. Needs the web extra (prometheus_client).

    Examples:

    \b
      bench-jobs metrics
      # node_exporter's textfile collector, a crontab line (write, then rename: never half a file):
      * * * * * cd /srv/mybench && bench-jobs metrics > /var/lib/node_exporter/bench.prom.tmp && mv \
        /var/lib/node_exporter/bench.prom.tmp /var/lib/node_exporter/bench.prom
    """
    from ..web.metrics import render_metrics

    found = state.bench()
    if state.options.site:
        state.sites(found)  # bench-wide, but an unknown --site is still a usage error
    text = render_metrics(found)
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
