"""Text that came from data (job names, errors, payloads) made safe to print or log: no control character
reaches a terminal or a log line as itself, so a job name cannot move the cursor, set a hyperlink, or forge a
log line with a newline."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode bidirectional overrides and isolates (which reorder what a
# terminal shows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep: str = "") -> str:
    """`text` with every control character but those in `keep` written as its escape (`\\n`, `\\x1b`), as
    Python's repr would show it."""

    def escaped(match: re.Match[str]) -> str:
        char = match.group(0)
        return char if char in keep else repr(char)[1:-1]

    return _CONTROL.sub(escaped, text)


def one_line(text: str, limit: int | None = None) -> str:
    """`text` as one printable line (a newline shows as `\\n`), cut to `limit` characters with an ellipsis."""
    line = printable(text)
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"
