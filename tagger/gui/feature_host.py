"""What a feature (auto-tag, class editing, exports...) may ask of the main window.

Features are handed the window through this protocol rather than the MainWindow
class, so they depend on a handful of hooks instead of the whole window, and
the window's module does not import them back in a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PySide6.QtGui import QAction, QUndoStack
from PySide6.QtWidgets import QWidget

from tagger.gui.jobs.workers import Job, JobRunner, JobWork
from tagger.gui.labels.labeling import LabelEditor
from tagger.gui.photos.lists import ListedPhotos
from tagger.gui.preview.panel import PreviewPane
from tagger.gui.settings.settings import AppSettings
from tagger.library.library import Library


class FeatureHost(Protocol):
    library: Library
    settings: AppSettings
    jobs: JobRunner
    undo_stack: QUndoStack
    labels: LabelEditor  # the user's label changes, undoable
    preview: PreviewPane
    photo_lists: ListedPhotos  # hand-picked lists shown in the grid (review queue, suspects)

    def widget(self) -> QWidget:
        """The window itself, as the parent of dialogs and message boxes."""
        ...

    def start_job(self, title: str, work: JobWork) -> Job: ...

    def add_model_action(self, action: QAction) -> None: ...

    def set_device_text(self, text: str) -> None: ...

    def refresh_photos(self, photo_ids: Sequence[int]) -> None: ...

    def reload_photos(self) -> None: ...

    def refresh_classes(self) -> None: ...

    def selected_photo_ids(self) -> list[int]: ...

    def show_status(self, text: str, timeout_ms: int = 10000) -> None: ...

    def report_problem(self, title: str, message: str, details: str = "") -> None:
        """A warning box, except while the window is closing (then only the log)."""
        ...

    def is_closing(self) -> bool: ...
