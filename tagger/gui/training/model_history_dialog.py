"""The list of every model version, with a one-click way back to any of them.

Each row: when it was made, how (zero-shot, quick, deep), from how many labels, how it
was judged when trained (comparison.headline: held-out labels right, with the 95%
interval, and how many tags it changed), and a button that makes it current. The dialog only
shows and asks; ModelHistoryFeature does the rolling back.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QLocale, Qt, Signal
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
from tagger.gui.widgets.dates import describe_moment
from tagger.training.comparison import headline

COLUMNS = ("Version", "Created", "Mode", "Labels", "Held-out right", "Tags changed", "Classes", "Note", "")
VERSION_COLUMN, ACTION_COLUMN = 0, len(COLUMNS) - 1
_MODE_NAMES = {"zero-shot": "Zero-shot", "quick": "Quick", "deep": "Deep", "head": "Head"}


def judged_cells(version: ModelVersion) -> tuple[str, str]:
    """(held-out labels right, tags changed) as the retrain dialog and `tagger models` state them."""
    figures = headline(version.metrics or {})
    n = figures["n_held_out"]
    right = "–"
    if n:
        low, high = figures["interval"]
        right = f"{round(figures['accuracy'] * n)} of {n} ({100 * low:.0f}–{100 * high:.0f}%)"
    changed = "–" if figures["changed"] is None else f"{figures['changed']} ({figures['supported']} supported)"
    return right, changed


class ModelHistoryDialog(QDialog):
    roll_back_requested = Signal(int)  # version id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("model_history_dialog")
        self.setWindowTitle("Model History")
        self.explanation = QLabel(
            'Every model Tagger has used or trained, newest first. "Held-out right": labels '
            "held out from its training that it tagged right, with the range the true "
            'accuracy lies in (95% sure). "Tags changed": unlabeled photos it re-tagged, '
            "and how many of those changes your labels support."
        )
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
            right, changed = judged_cells(version)
            when = describe_moment(version.created_at, locale)
            cells = [
                f"v{version.id}" + ("  ● current" if version.is_current else ""),
                when,
                _MODE_NAMES.get(version.mode, version.mode),
                str(version.n_labels),
                right,
                changed,
                ", ".join(version.classes),
                version.note,
            ]
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
