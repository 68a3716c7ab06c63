"""Lets a worker have the GUI thread run one step and wait for its answer.

For work that must interleave with writes only the library's owner may do: a
move into a sorted folder followed by the library noting the new path, or a big
label import applied chunk by chunk with the window repainting in between.

The worker gives up waiting when its job is cancelled (closing the window waits
for workers while the GUI thread cannot run anything); a request given up on is
then never run, so the worker can safely undo what the step was for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

from tagger.errors import CallAbandoned

T = TypeVar("T")

_POLL_S = 0.05


class _Request(Generic[T]):
    def __init__(self, function: Callable[[], T]) -> None:
        self.function = function
        self.lock = threading.Lock()
        self.answered = threading.Event()
        self.abandoned = False
        self.value: T | None = None
        self.error: BaseException | None = None


class GuiThreadCaller(QObject):
    """Create it on the GUI thread; call `call` from a worker."""

    _requested = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # This object lives in the GUI thread, so a worker's emit is queued there.
        self._requested.connect(self._answer)

    def call(self, function: Callable[[], T], *, should_abandon: Callable[[], bool]) -> T:
        """Run `function` on the GUI thread and return its result (or raise its exception).

        Raises CallAbandoned when `should_abandon()` turns true before the GUI thread got to it."""
        request: _Request[T] = _Request(function)
        self._requested.emit(request)
        while not request.answered.wait(_POLL_S):
            if should_abandon():
                with request.lock:
                    if not request.answered.is_set():
                        request.abandoned = True
                        raise CallAbandoned("stopped waiting for the window")
                break
        if request.error is not None:
            raise request.error
        return request.value  # type: ignore[return-value]

    @Slot(object)
    def _answer(self, request: _Request) -> None:
        with request.lock:
            if request.abandoned:
                return
            try:
                request.value = request.function()
            except Exception as error:  # noqa: BLE001 - handed to the worker, which decides
                request.error = error
            request.answered.set()
