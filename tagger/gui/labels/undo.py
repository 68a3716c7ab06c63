"""Undo and redo of label changes, as QUndoStack commands over the library."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PySide6.QtGui import QUndoCommand

from tagger.domain import LabelState
from tagger.gui.jobs.workers import describe_error
from tagger.library.library import Library

log = logging.getLogger(__name__)

PhotosChanged = Callable[[list[int]], None]
ErrorReporter = Callable[[str], None]


class LabelChangeCommand(QUndoCommand):
    """A label change that is already in the library when pushed.

    It holds the labels the change replaced; undo writes them back and keeps
    what they replaced in turn, so redo is the same swap once more. The first
    redo() (which QUndoStack.push calls) does nothing: the change was made
    before the command existed, so a refused change never lands on the stack."""

    def __init__(
        self,
        library: Library,
        description: str,
        replaced: Sequence[LabelState],
        on_changed: PhotosChanged,
        on_error: ErrorReporter,
    ) -> None:
        super().__init__(description)
        self._library = library
        self._other_states = list(replaced)
        self._on_changed = on_changed
        self._on_error = on_error
        self._already_applied = True

    @property
    def photo_ids(self) -> list[int]:
        return [state.photo_id for state in self._other_states]

    def undo(self) -> None:
        self._swap()

    def redo(self) -> None:
        if self._already_applied:
            self._already_applied = False
            return
        self._swap()

    def _swap(self) -> None:
        try:
            self._other_states = self._library.restore_labels(self._other_states)
        except Exception as error:  # noqa: BLE001 - the user must hear of it; a traceback helps nobody
            log.exception("Undo/redo of %r failed", self.text())
            # Obsolete: the stack drops it instead of offering a step that cannot be taken.
            self.setObsolete(True)
            self._on_error(f"Could not {self.text().lower()}: {describe_error(error)}")
            return
        self._on_changed(self.photo_ids)
