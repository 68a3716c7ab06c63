"""Opens the Classes dialog and answers Label ▸ New Class…, both through one ClassEditor."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QInputDialog

from tagger.errors import ClassChangeRefused
from tagger.gui.classes.dialog import ClassesDialog
from tagger.gui.classes.editing import ClassEditor
from tagger.gui.feature_host import FeatureHost


class ClassesFeature(QObject):
    def __init__(self, host: FeatureHost, is_busy: Callable[[], bool], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self.editor = ClassEditor(host, is_busy, self)
        self.dialog: ClassesDialog | None = None

    def open_dialog(self) -> ClassesDialog:
        """Show the dialog (one at a time); it stays open beside the grid while the user works."""
        if self.dialog is None:
            dialog = ClassesDialog(self.editor, self._host.widget())
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.destroyed.connect(self._forget_dialog)
            self.dialog = dialog
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def ask_new_class(self) -> str | None:
        name, accepted = QInputDialog.getText(
            self._host.widget(), "New class", "Name of the new class (e.g. cow, horse):"
        )
        if not accepted or not name.strip():
            return None
        try:
            return self.editor.add(name)
        except ClassChangeRefused as refusal:
            self._host.report_problem("Class not added", str(refusal))
            return None

    def _forget_dialog(self) -> None:
        self.dialog = None
