"""Hand-picked lists of photos (the review queue, likely-wrong labels) shown in the grid.

One list at a time replaces the sort order: the grid shows the listed photos in the
list's order, still narrowed by the filter bar, under a banner that says what the list
is and how to leave it. Opening another list closes the first, and its owner hears so
through `closed`, so that its toggle can uncheck itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from tagger.gui.photos.gallery import GalleryView
from tagger.gui.photos.model import PhotoListModel


class PhotoListBanner(QFrame):
    """The strip above the grid while a list is shown: its title and a way back to all photos."""

    leave_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("photo_list_banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.leave_button = QPushButton("Show All Photos")
        self.leave_button.setToolTip("Close this list and go back to the photos the filter shows")
        self.leave_button.clicked.connect(self.leave_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 6, 4)
        layout.addWidget(self.title, 1)
        layout.addWidget(self.leave_button)
        self.hide()


class ListedPhotos(QObject):
    closed = Signal(str)  # the owner whose list was closed (by the user, or replaced by another)
    active_changed = Signal(bool)

    def __init__(self, model: PhotoListModel, gallery: GalleryView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self._gallery = gallery
        self._owner: str | None = None
        self.banner = PhotoListBanner()
        self.banner.leave_requested.connect(lambda: self.close(self._owner))

    @property
    def owner(self) -> str | None:
        return self._owner

    def show_list(self, owner: str, title: str, photo_ids: Sequence[int]) -> None:
        """Show these photos in this order; the current photo stays selected when it is listed."""
        previous = self._owner
        if previous is not None and previous != owner:
            self._owner = None
            self.closed.emit(previous)
        self._owner = owner
        self.banner.title.setText(title)
        self.banner.title.setToolTip(title)
        self.banner.show()
        current = self._gallery.current_photo_id()
        self._model.set_listed(photo_ids)
        self._reselect(current)
        if previous is None:
            self.active_changed.emit(True)

    def close(self, owner: str | None) -> None:
        """Back to every photo the filter shows, if `owner`'s list is the one shown."""
        if owner is None or owner != self._owner:
            return
        self._owner = None
        self.banner.hide()
        current = self._gallery.current_photo_id()
        self._model.set_listed(None)
        self._reselect(current)
        self.closed.emit(owner)
        self.active_changed.emit(False)

    def select_next_after(self, photo_id: int) -> None:
        """Move on from a photo the user just dealt with, as labeling does."""
        row = self._model.row_of(photo_id)
        if row is not None and row + 1 < self._model.rowCount():
            self._gallery.select_row(row + 1)

    def _reselect(self, photo_id: int | None) -> None:
        if photo_id is not None and self._gallery.select_photo(photo_id):
            return
        if self._model.rowCount():
            self._gallery.select_row(0)
