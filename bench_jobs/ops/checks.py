"""The result of a health check, and doctor's report of them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One named result. A check that is not `ok` fails doctor (exit 1); a `warning` passes, so a monitor
    does not page on it, but is shown with its hint."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False

    @property
    def level(self) -> str:
        """ "error" when the check fails, "warning" when it passes with a warning, else "ok"."""
        if not self.ok:
            return "error"
        return "warning" if self.warning else "ok"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "hint": self.hint, "level": self.level}


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    exit_code: int | None = None  # EXIT_REDIS when Redis did not answer; else None (0 or 1 from the checks)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.as_json() for check in self.checks]}
