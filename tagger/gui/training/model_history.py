"""Model ▸ Model History: every version, and rolling back to one in a click.

Rolling back makes the version current (Library.promote) and re-tags the library with it
through the ModelSwitcher: from cached features when the version's backbone has them (any
quick or zero-shot version), by decoding the photos otherwise.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import describe_error
from tagger.gui.training.model_history_dialog import ModelHistoryDialog
from tagger.gui.training.model_switching import ModelSwitcher

HISTORY_SHORTCUT = "Ctrl+Shift+H"


class ModelHistoryFeature(QObject):
    def __init__(self, host: FeatureHost, switcher: ModelSwitcher, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._switcher = switcher
        self.dialog: ModelHistoryDialog | None = None
        self.open_action = QAction("Model &History…", self)
        self.open_action.setShortcut(QKeySequence(HISTORY_SHORTCUT))
        self.open_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.open_action.setToolTip(f"Every model version, and rolling back to one ({HISTORY_SHORTCUT})")
        self.open_action.triggered.connect(lambda _checked=False: self.open_dialog())
        host.add_model_action(self.open_action)
        # Any change of the current version (a retrain, a rollback) shows in an open dialog.
        switcher.switched.connect(lambda _version: self._refresh())
        switcher.retag_finished.connect(lambda _count: self._refresh())

    def open_dialog(self) -> ModelHistoryDialog:
        if self.dialog is None:
            dialog = ModelHistoryDialog(self._host.widget())
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.roll_back_requested.connect(self.roll_back)
            dialog.destroyed.connect(self._forget_dialog)
            self.dialog = dialog
        self._refresh()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def roll_back(self, version_id: int) -> None:
        try:
            version = self._host.library.promote(version_id)
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: the current model stays
            self._host.report_problem("Model not changed", describe_error(error))
            return
        self._switcher.adopt(version)
        if self.dialog is not None:
            self.dialog.status.setText(f"Model v{version.id} is current again; re-tagging your photos with it…")

    def refresh(self) -> None:
        """Re-read the versions (e.g. after a training registered a new one)."""
        self._refresh()

    def _refresh(self) -> None:
        if self.dialog is None:
            return
        try:
            versions = self._host.library.model_versions()
        except Exception as error:  # noqa: BLE001 - shown in the dialog rather than a second box
            self.dialog.status.setText(f"Could not read the model history: {describe_error(error)}")
            return
        self.dialog.show_versions(versions, busy=self._switcher.is_retagging())
        if not self._switcher.is_retagging() and self.dialog.status.text().endswith("…"):
            self.dialog.status.setText("Done: your photos carry the current model's tags.")

    def _forget_dialog(self) -> None:
        self.dialog = None
