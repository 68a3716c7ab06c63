"""Keep This One: of a group of near-duplicates (resized or re-encoded copies found at import,
shown by the filter bar's "Near-duplicates"), keep the selected photo and remove the others.

Removing takes photos out of the library (with their labels), never off the disk; a
confirmation says so and lists them first. It cannot be undone, so the undo history, which
may name the removed photos, is cleared."""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox

from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import describe_error

_LISTED_AT_MOST = 10


class KeepOneOfNearDuplicates(QObject):
    def __init__(self, host: FeatureHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self.confirmation: QMessageBox | None = None
        self.keep_action = QAction("&Keep This One", self)
        self.keep_action.setToolTip(
            "Keep the selected photo and remove the other near-duplicates of its group from the library "
            "(their files stay on disk)"
        )
        self.keep_action.setEnabled(False)
        self.keep_action.triggered.connect(lambda _checked=False: self.ask())
        host.preview.photo_shown.connect(lambda _photo_id: self.update_enabled())

    def update_enabled(self) -> None:
        selected = self._host.selected_photo_ids()
        self.keep_action.setEnabled(len(selected) == 1 and self._host.library.has_near_duplicate(selected[0]))

    def ask(self) -> None:
        """Ask whether to keep the selected photo and remove the rest of its group."""
        group = self._group_of_selection()
        if not group:
            self._host.show_status("Select one photo of a group of near-duplicates (Show ▸ Near-duplicates)")
            return
        keep = self._host.selected_photo_ids()[0]
        kept = self._host.library.photo(keep)
        others = [photo for photo in self._host.library.photos(group) if photo.id != keep]
        if kept is None or not others:
            return
        listed = "\n".join(photo.path for photo in others[:_LISTED_AT_MOST])
        if len(others) > _LISTED_AT_MOST:
            listed += f"\n… and {len(others) - _LISTED_AT_MOST} more"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Keep This One",
            f"Keep {os.path.basename(kept.path)} and remove the other {len(others)} photo(s) of its group "
            "from the library?\n\nThe files stay on disk, untouched: only the library forgets them, with "
            "their labels. This cannot be undone.",
            QMessageBox.StandardButton.Cancel,
            self._host.widget(),
        )
        box.setObjectName("keep_one_confirmation")
        box.setDetailedText(listed)
        remove = box.addButton("Remove from Library", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._keep(keep) if button is remove else None)
        box.finished.connect(lambda _result: setattr(self, "confirmation", None))
        self.confirmation = box
        box.open()

    def _keep(self, photo_id: int) -> None:
        try:
            removed = self._host.library.keep_near_duplicate(photo_id)
        except Exception as error:  # noqa: BLE001 - shown to the user instead of a traceback
            self._host.report_problem("Could not remove the near-duplicates", describe_error(error))
            return
        # Undoing a label change of a photo that is gone would fail.
        self._host.undo_stack.clear()
        self._host.reload_photos()
        self._host.show_status(
            f"Removed {len(removed)} near-duplicate(s) from the library; their files are untouched on disk"
        )
        self.update_enabled()

    def _group_of_selection(self) -> list[int]:
        selected = self._host.selected_photo_ids()
        if len(selected) != 1:
            return []
        return next((group for group in self._host.library.near_duplicate_id_groups() if selected[0] in group), [])
