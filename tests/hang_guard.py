"""Hang guards: the tests' deadlines on subprocesses, servers, kernels and browser pages.

Each deadline is generous (several times the longest run seen on a 2-core machine with other work beside
it) and bounds nothing about speed: a test that meets one has hung (a worker that never exits, a kernel
that never answers, a figure that is never drawn), and it fails with a message that begins "hang guard".
The timeouts that subprocess, nbclient (a chapter's cell), urllib and playwright raise get the same name
from ``conftest.py`` (:data:`TIMEOUTS`); the polling loops use :class:`Deadline`.
"""
from __future__ import annotations

import subprocess
import time
from typing import Callable, NoReturn

import pytest

try:  # the browser tests' timeouts; without playwright those tests fail in their fixture
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

#: the exceptions a timeout raises: subprocess's, the built-in one (nbclient's cell timeout, a socket's)
#: and playwright's
TIMEOUTS = (subprocess.TimeoutExpired, TimeoutError, PlaywrightTimeout)


def fail(what: str, detail: str = "") -> NoReturn:
    """Fail the test as hung: ``what`` says what did not happen and within how long."""
    pytest.fail(f"hang guard: {what} (a deadline against a hang, not a bound on speed)"
                + (f"\n{detail}" if detail else ""), pytrace=False)


class Deadline:
    """A deadline ``seconds`` from now for ``what`` (e.g. "JupyterLab answering"), polled by a loop."""

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what, self.end = seconds, what, time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() > self.end

    def check(self, detail: str | Callable[[], object] = "") -> None:
        """Fail as hung once the deadline has passed; ``detail`` (text, or a callable giving it, evaluated
        only then) is printed below the message."""
        if self.expired():
            fail(f"{self.what} not within {self.seconds:g} s", str(detail() if callable(detail) else detail))
