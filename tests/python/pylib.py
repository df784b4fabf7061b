"""Shared helpers of the Python client's tests (tests/python/test_*.py):
the chanq package from clients/python/src, a real chanqd on a free
loopback port (tests/ops/opslib.py's Daemon) and a unittest runner whose
exit status automake understands (0 pass, 1 fail, 77 all skipped; a run
that found no test fails). Every wait is bounded."""
from __future__ import annotations

import os
import signal
import sys
import time
import unittest
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
from opslib import TOP_BUILDDIR, TOP_SRCDIR, Daemon  # noqa: E402

sys.path.insert(0, os.path.join(TOP_SRCDIR, "clients", "python", "src"))
import chanq  # noqa: E402,F401

BUDGET = 90  # seconds for one test file; a hang fails the run


class Server(Daemon):
    """chanqd --memory on 127.0.0.1:0 with extra arguments."""

    def __init__(self, *extra: str) -> None:
        super().__init__(["--memory", "--listen", "127.0.0.1:0"] + list(extra))

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port


def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Polls pred until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("%s not reached within %gs" % (what, timeout))


def run(module: str) -> int:
    signal.alarm(BUDGET)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module])
    if suite.countTestCases() == 0:
        print("FAIL: no tests found")
        return 1
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.skipped and len(result.skipped) == result.testsRun:
        return 77
    return 0
