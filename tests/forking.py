"""Running a piece of a test in a forked child, for what must survive `os.fork()`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest


def in_forked_child(work: Callable[[], None]) -> tuple[int, int]:
    """Run `work` in a forked child: (its pid, its exit code, 1 if `work` raised).

    A child that has not ended after 20 s is killed and the test fails: it hung.
    """
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            work()
        except BaseException:
            code = 1
        os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            return pid, os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung, waiting for a lock it inherited held")
