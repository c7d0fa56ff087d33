"""Names this app imported from elsewhere: their paths are inside the app, the code is not, so neither
`enqueue` nor a worker may run them (tests/test_forged_jobs.py)."""

from functools import partial
from os import system
from subprocess import Popen

from other_app.tasks import only_for_beta

say_hello = partial(print, "hello")

__all__ = ["Popen", "only_for_beta", "say_hello", "system"]
