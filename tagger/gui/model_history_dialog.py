"""The list of every model version, with a one-click way back to any of them.

Each row: when it was made, how (zero-shot, quick, deep), from how many labels, how it
scored on held-out labels (accuracy and calibration error), and a button that makes it
current. The dialog only shows and asks; ModelHistoryFeature does the rolling back.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QDateTime, QLocale, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tagger.domain import ModelVersion
from tagger.gui.comparison_view import percent

COLUMNS = ("Version", "Created", "Mode", "Labels", "Accuracy", "ECE", "Classes", "Note", "")
VERSION_COLUMN, ACTION_COLUMN = 0, len(COLUMNS) - 1
_MODE_NAMES = {"zero-shot": "Zero-shot", "quick": "Quick", "deep": "Deep", "head": "Head"}


def held_out_scores(version: ModelVersion) -> tuple[float | None, float | None]:
    """(accuracy, ECE) of a version on the labels held out when it was trained; None when never scored."""
    metrics = version.metrics or {}
    report = metrics.get("new_all_held_out") or metrics.get("new") or {}
    return report.get("accuracy"), report.get("ece")


class ModelHistoryDialog(QDialog):
    roll_back_requested = Signal(int)  # version id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("model_history_dialog")
        self.setWindowTitle("Model History")
        self.explanation = QLabel("Every model Tagger has used or trained, newest first. Accuracy and calibration "
                                  "error (ECE) were measured on labels held out from training.")
        self.explanation.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("model_versions")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Note"), QHeaderView.ResizeMode.Stretch)
        self.status = QLabel()
        self.status.setObjectName("history_status")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.explanation)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(980, 420)

    def show_versions(self, versions: Sequence[ModelVersion], *, busy: bool = False) -> None:
        """Fill the table (newest first); `busy` disables rolling back while a re-tag runs."""
        ordered = sorted(versions, key=lambda version: version.id, reverse=True)
        locale = QLocale()
        self.table.setRowCount(len(ordered))
        for row, version in enumerate(ordered):
            accuracy, ece = held_out_scores(version)
            when = locale.toString(QDateTime.fromSecsSinceEpoch(int(version.created_at)),
                                   QLocale.FormatType.ShortFormat)
            cells = [f"v{version.id}" + ("  ● current" if version.is_current else ""), when,
                     _MODE_NAMES.get(version.mode, version.mode), str(version.n_labels), percent(accuracy),
                     percent(ece), ", ".join(version.classes), version.note]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                item.setData(Qt.ItemDataRole.UserRole, version.id)
                if column in (3, 4, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if version.is_current:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)
            self.table.setCellWidget(row, ACTION_COLUMN, self._action_button(version, busy))
        self.table.resizeColumnsToContents()

    def button_for(self, version_id: int) -> QPushButton | None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, VERSION_COLUMN).data(Qt.ItemDataRole.UserRole) == version_id:
                widget = self.table.cellWidget(row, ACTION_COLUMN)
                return widget if isinstance(widget, QPushButton) else None
        return None

    def _action_button(self, version: ModelVersion, busy: bool) -> QPushButton:
        if version.is_current:
            button = QPushButton("Current")
            button.setEnabled(False)
            return button
        button = QPushButton("Roll Back to This Version")
        button.setToolTip(f"Make v{version.id} the current model and re-tag your photos with it")
        button.setEnabled(not busy)
        button.clicked.connect(lambda _checked=False, chosen=version.id: self.roll_back_requested.emit(chosen))
        return button
