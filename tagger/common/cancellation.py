"""How long-running work is asked to stop: one shape for every loop in the core."""

from __future__ import annotations

import threading
from collections.abc import Callable

# A threading.Event (set to stop) or a no-argument callable (True to stop): the GUI's
# workers pass a callable, tests and the CLI often an Event.
CancelCheck = threading.Event | Callable[[], bool]


def is_cancelled(cancel: CancelCheck | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())
