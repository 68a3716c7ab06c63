"""Whether a child process Tagger started is still running, for the tests that kill or close one."""

from __future__ import annotations

import time
from pathlib import Path

HAS_PROC = Path("/proc/self/status").exists()


def is_running(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, its parent gone and not yet reaped) is not running."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "State:\tZ" not in status


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once `pid` has stopped running, False if it still runs after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
