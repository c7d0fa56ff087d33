"""Classes and objects defined in this app whose call runs code of another module (inherited constructors, a
foreign metaclass or __call__): their paths and __module__ are the app's, the code that runs is not, so
neither `enqueue` nor a worker may run them (tests/test_forged_jobs.py). Beside them, look-alikes whose call
is the app's own code, which may run."""

from __future__ import annotations

import enum
import functools
import logging
import os
from typing import Any


class AppLogHandler(logging.FileHandler):
    """Inherits logging.FileHandler's constructor: naming it with filename=..., mode="w" truncates a file."""


class Color(enum.Enum):
    """Calling it runs enum's metaclass __call__."""

    RED = "red"


class Bound(functools.partial):  # type: ignore[type-arg]
    """A partial subclass: calling an instance runs functools.partial.__call__."""


bound_system = Bound(os.system, "true")
static_system = staticmethod(os.system)


class OwnHandler(logging.FileHandler):
    """Its constructor is the app's own (whatever it then calls is the app's decision)."""

    def __init__(self, name: str) -> None:
        self.name_given = name


class Loader:
    """A plain class: object's construction and the app's __init__."""

    def __init__(self, name: str) -> None:
        self.name = name


class Runner:
    def __call__(self, **kwargs: Any) -> str:
        return "ran"


runner = Runner()
