"""What the ticks saw, kept so that `why` can explain a slot with no decision: when ticks ran (as spans of
unbroken ticks, paused or not) and when each site's scheduler was switched off or on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from ..core.keys import Keys

SPAN_LIMIT = 2000  # spans kept: a scheduler that never stops keeps one span however long it runs
SITE_STATE_LIMIT = 200  # state changes kept per site
SPAN_SLACK = 1.5  # ticks at most this many tick intervals apart belong to the same span (lag and jitter)

# Extend the newest span when this tick continues it (same state, within the slack), else start a new one.
# A tick already inside the newest span (a `--once` run beside the loop) changes nothing.
# KEYS: the span list. ARGV: now (epoch s), slack (s), state ('run' or 'paused'), limit.
SPAN_LUA = """
local now, slack, state = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local head = redis.call('LINDEX', KEYS[1], 0)
if head then
  local first, last, was = string.match(head, '^(%d+) (%d+) (%a+)$')
  first, last = tonumber(first), tonumber(last)
  if first and now >= first and now <= last then return 0 end
  if first and was == state and now > last and now - last <= slack then
    redis.call('LSET', KEYS[1], 0, first .. ' ' .. now .. ' ' .. state)
    return 1
  end
end
redis.call('LPUSH', KEYS[1], now .. ' ' .. now .. ' ' .. state)
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
return 2
"""

# Record a site's state unless it is already its newest. KEYS: the site's state list. ARGV: now, state, limit.
STATE_LUA = """
local head = redis.call('LINDEX', KEYS[1], 0)
if head and string.match(head, ' (%a+)$') == ARGV[2] then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
return 1
"""


@dataclass(frozen=True)
class TickSpan:
    """Ticks ran from `first` to `last` with no gap longer than SPAN_SLACK intervals; `paused` when the bench's
    pause_scheduler was on for them (they fired nothing)."""

    first: datetime
    last: datetime
    paused: bool = False


@dataclass(frozen=True)
class SiteState:
    """From `since` on, the site's scheduler was `on`, `disabled` or in `maintenance` (until the next change)."""

    since: datetime
    state: str


class TickRecorder:
    """Writes the tick spans and the site state changes on the tick's own pipeline."""

    def __init__(self, conn: redis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._span = conn.register_script(SPAN_LUA)
        self._state = conn.register_script(STATE_LUA)
        self._known: dict[str, str] = {}  # site -> the state this process last recorded

    def record(self, pipe: Any, now: datetime, paused: bool, tick_interval_s: int) -> None:
        """Queue this tick on its span."""
        args = [int(now.timestamp()), int(tick_interval_s * SPAN_SLACK), "paused" if paused else "run", SPAN_LIMIT]
        self._span(keys=[self.keys.tick_spans], args=args, client=pipe)

    def record_states(self, pipe: Any, now: datetime, states: Mapping[str, str]) -> None:
        """Queue the states of the sites whose state this process has not recorded yet (the script drops the
        ones Redis already holds, so a new process or a second scheduler adds nothing)."""
        for site, state in states.items():
            if self._known.get(site) != state:
                keys = [self.keys.site_states(site)]
                self._state(keys=keys, args=[int(now.timestamp()), state, SITE_STATE_LIMIT], client=pipe)
                self._known[site] = state


def _epoch(text: bytes | str) -> datetime:
    return datetime.fromtimestamp(int(text), timezone.utc)


def read_spans(conn: redis.Redis, keys: Keys) -> list[TickSpan]:
    """The recorded tick spans, oldest first."""
    raw: list[bytes] = conn.lrange(keys.tick_spans, 0, -1)  # type: ignore[assignment]
    spans = []
    for item in raw:
        parts = item.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            spans.append(TickSpan(_epoch(parts[0]), _epoch(parts[1]), parts[2] == b"paused"))
    return sorted(spans, key=lambda span: span.first)


def read_site_states(conn: redis.Redis, keys: Keys, site: str) -> list[SiteState]:
    """The site's recorded state changes, oldest first."""
    raw: list[bytes] = conn.lrange(keys.site_states(site), 0, -1)  # type: ignore[assignment]
    states = []
    for item in raw:
        parts = item.decode().split()
        if len(parts) == 2 and parts[0].isdigit():
            states.append(SiteState(_epoch(parts[0]), parts[1]))
    return sorted(states, key=lambda state: state.since)
