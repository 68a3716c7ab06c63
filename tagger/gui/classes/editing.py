"""Adding, renaming and removing classes, and everything that must follow each change.

After the library changes its class list, the model gets a version with the new
list (runner.sync_model_classes: learned rows follow a renamed class) and every
photo the user did not label is re-scored from its cached features, so the grid
shows tags of the new list at once. The label undo history is cleared: its entries
name classes that may no longer exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from tagger.errors import ClassChangeRefused, LibraryError
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import describe_error
from tagger.tagging.runner import sync_model_classes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassUsage:
    labeled: int  # photos with this label, the user's and the model's
    confirmed: int  # of which the user's own


class ClassEditor(QObject):
    classes_changed = Signal()  # the library, the model and the grid all show the new list
    # A model version with the new class list is current; its tags are re-scored by whoever
    # listens (the window's ModelSwitcher, in a worker: 10,000 photos take a second).
    model_followed = Signal(object)  # ModelVersion

    def __init__(
        self, host: FeatureHost, is_busy: Callable[[], bool] = lambda: False, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._is_busy = is_busy

    def class_names(self) -> list[str]:
        return self._host.library.class_names()

    def usage(self) -> dict[str, ClassUsage]:
        counts = self._host.library.class_counts()
        return {name: ClassUsage(c.get("user", 0) + c.get("model", 0), c.get("user", 0)) for name, c in counts.items()}

    def add(self, name: str) -> str:
        """Add a class; returns its name as stored (spaces tidied). Raises ClassChangeRefused."""
        self._refuse_while_busy()
        try:
            added = self._host.library.add_class(name).name
        except (LibraryError, OSError) as error:
            raise ClassChangeRefused(describe_error(error)) from error
        self._follow()
        return added

    def rename(self, old: str, new: str) -> str:
        """Rename a class; returns the new name as stored. Raises ClassChangeRefused."""
        self._refuse_while_busy()
        before = self.class_names()
        try:
            self._host.library.rename_class(old, new)
        except (LibraryError, OSError) as error:
            raise ClassChangeRefused(describe_error(error)) from error
        # The library tidies the name (spaces); a rename keeps the class's place in the list.
        stored = self.class_names()[before.index(old)]
        if stored != old:
            self._follow(renamed={old: stored})
        return stored

    def remove(self, name: str) -> int:
        """Remove a class; returns how many photos lost their label."""
        self._refuse_while_busy()
        try:
            unlabeled = self._host.library.remove_class(name)
        except (LibraryError, OSError) as error:
            raise ClassChangeRefused(describe_error(error)) from error
        self._follow()
        return unlabeled

    def follow_external_change(self) -> None:
        """Classes were added by something else (a label import): bring the model and the grid along."""
        self._follow()

    # -- after a change -------------------------------------------------------------

    def _refuse_while_busy(self) -> None:
        if self._is_busy():
            # A run in progress scores with the class list it started with.
            raise ClassChangeRefused(
                "The model is working. Wait for Auto-tag to finish, or cancel it, before changing classes."
            )

    def _follow(self, renamed: dict[str, str] | None = None) -> None:
        """Bring the model and the tags along; the class change itself is already saved."""
        version = None
        try:
            version = sync_model_classes(self._host.library, renamed=renamed)
        except Exception as error:  # noqa: BLE001 - the classes changed; only the model failed to follow
            log.exception("The model could not follow the class change")
            self._host.report_problem(
                "Tags not updated",
                "The classes were changed, but the model's tags could not be updated: "
                f"{describe_error(error)}. Run Re-tag All to update them.",
            )
        self._host.undo_stack.clear()
        self._host.refresh_classes()
        self.classes_changed.emit()
        if version is not None:
            self.model_followed.emit(version)
