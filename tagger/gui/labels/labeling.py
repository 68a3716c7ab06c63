"""The user's label changes: written to the library at once, and pushed for undo."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from tagger.domain import LabelSource, LabelState
from tagger.gui.jobs.workers import describe_error
from tagger.gui.labels.undo import LabelChangeCommand
from tagger.library.library import Library

log = logging.getLogger(__name__)


class LabelEditor(QObject):
    """Assign, confirm and clear labels on many photos at once, each step undoable."""

    labels_changed = Signal(list)  # photo ids whose label changed (by an edit, undo or redo)
    labels_restored = Signal(list)  # photo ids an undo or redo just changed back
    failed = Signal(str)  # a message for the user

    def __init__(self, library: Library, undo_stack: QUndoStack, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self.undo_stack = undo_stack

    def assign(self, photo_ids: Sequence[int], class_name: str) -> bool:
        """Label the photos as `class_name`, confirmed by the user.

        Returns False only when the change could not be saved (`failed` says why);
        True also when the photos already had this label."""
        return self._change(
            photo_ids,
            f"Label {_count(photo_ids)} as {class_name}",
            lambda: self._library.set_user_labels(photo_ids, class_name),
            lambda state: state.label != class_name or state.source is not LabelSource.USER,
        )

    def confirm(self, photo_ids: Sequence[int]) -> bool:
        """Accept the model's guesses as the user's labels."""
        return self._change(
            photo_ids,
            f"Confirm {_count(photo_ids)}",
            lambda: self._library.confirm_model_labels(photo_ids),
            lambda state: state.label is not None and state.source is not LabelSource.USER,
        )

    def clear(self, photo_ids: Sequence[int]) -> bool:
        return self._change(
            photo_ids,
            f"Clear the label of {_count(photo_ids)}",
            lambda: self._library.set_user_labels(photo_ids, None),
            lambda state: state.label is not None,
        )

    def _change(self, photo_ids: Sequence[int], description: str, write, changes_state) -> bool:  # noqa: ANN001
        if not photo_ids:
            return False
        try:
            before: list[LabelState] = write()
        except Exception as error:  # noqa: BLE001 - shown to the user instead of a traceback
            log.exception("%s failed", description)
            self.failed.emit(f"Could not {description.lower()}: {describe_error(error)}")
            return False
        changed = [state for state in before if changes_state(state)]
        if not changed:
            return True
        # Only the photos that changed go on the stack: undoing must not rewrite the others.
        self.undo_stack.push(
            LabelChangeCommand(self._library, description, changed, self._after_undo_or_redo, self.failed.emit)
        )
        self.labels_changed.emit([state.photo_id for state in changed])
        return True

    def _after_undo_or_redo(self, photo_ids: list[int]) -> None:
        self.labels_changed.emit(photo_ids)
        self.labels_restored.emit(photo_ids)


def _count(photo_ids: Sequence[int]) -> str:
    return "1 photo" if len(photo_ids) == 1 else f"{len(photo_ids)} photos"
