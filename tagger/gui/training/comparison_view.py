"""New model against current model, on the same held-out labels: the numbers a retrain is judged by.

Reads the reports tagger.training.comparison stores in a training outcome's metrics
("new" and "current": accuracy, ECE, per-class precision and recall, confusion). When
no comparison was possible (every held-out label was seen by the current model, or too
few labels to hold any out), the new model's own held-out report is shown alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

Report = Mapping[str, Any]
_HIT_COLOR = QColor(46, 158, 106, 70)  # the diagonal of a confusion matrix: right answers
_MISS_COLOR = QColor(208, 83, 74, 60)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def reports_of(metrics: Mapping[str, Any]) -> tuple[Report | None, Report | None]:
    """(new, current) reports on the same labels; (new on all held-out labels, None) when no comparison."""
    new, current = metrics.get("new"), metrics.get("current")
    if new and current:
        return new, current
    return metrics.get("new_all_held_out") or None, None


class ComparisonView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.summary = _table("comparison_summary")
        self.per_class = _table("comparison_per_class", full_width=True)
        self.new_confusion = _table("new_confusion")
        self.current_confusion = _table("current_confusion")
        self._new_confusion_title = QLabel("<b>New model</b> (rows: your labels, columns: its tags)")
        self._current_confusion_title = QLabel("<b>Current model</b>")
        confusions = QHBoxLayout()
        for title, table in (
            (self._new_confusion_title, self.new_confusion),
            (self._current_confusion_title, self.current_confusion),
        ):
            column = QVBoxLayout()
            column.addWidget(title)
            column.addWidget(table)
            column.addStretch(1)
            confusions.addLayout(column)
        confusions.addStretch(1)
        summary_row = QHBoxLayout()
        summary_row.addWidget(self.summary)
        summary_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addLayout(summary_row)
        layout.addWidget(self.per_class)
        layout.addLayout(confusions)

    def show_metrics(self, metrics: Mapping[str, Any]) -> None:
        new, current = reports_of(metrics)
        if new is None:
            self.caption.setText("There were too few labels to hold any out, so the new model could not be scored.")
            for table in (self.summary, self.per_class, self.new_confusion, self.current_confusion):
                table.hide()
            self._new_confusion_title.hide()
            self._current_confusion_title.hide()
            return
        evaluation = metrics.get("evaluation", "held-out labels")
        if current is not None:
            self.caption.setText(
                f"Both models on the same {new.get('n', 0)} held-out labels ({evaluation}), "
                "none of which either model learned from."
            )
        else:
            self.caption.setText(
                f"The new model on {new.get('n', 0)} held-out labels ({evaluation}). The current "
                "model learned from all of them, so it cannot be scored fairly on them."
            )
        self._fill_summary(new, current)
        self._fill_per_class(new, current)
        _fill_confusion(self.new_confusion, new)
        has_current = current is not None
        self.current_confusion.setVisible(has_current)
        self._current_confusion_title.setVisible(has_current)
        if current is not None:
            _fill_confusion(self.current_confusion, current)

    def _fill_summary(self, new: Report, current: Report | None) -> None:
        headers = ["New model"] + (["Current model"] if current is not None else [])
        rows = [("Accuracy", "accuracy", True), ("Calibration error (ECE)", "ece", False)]
        table = self.summary
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        table.setVerticalHeaderLabels([name for name, _key, _higher in rows])
        for row, (_name, key, higher_is_better) in enumerate(rows):
            values = [new.get(key)] + ([current.get(key)] if current is not None else [])
            for column, value in enumerate(values):
                table.setItem(row, column, _cell(percent(value), bold=_is_best(value, values, higher_is_better)))
        _fit(table)

    def _fill_per_class(self, new: Report, current: Report | None) -> None:
        classes: Sequence[str] = new.get("classes") or []
        table = self.per_class
        headers = ["Precision new", "Recall new"]
        if current is not None:
            headers = ["Precision new", "Precision current", "Recall new", "Recall current"]
        headers.append("Held-out labels")
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(classes))
        table.setVerticalHeaderLabels(list(classes))
        for row, name in enumerate(classes):
            mine = (new.get("per_class") or {}).get(name, {})
            theirs = (current.get("per_class") or {}).get(name, {}) if current is not None else {}
            if current is not None:
                values = [(mine.get("precision"), theirs.get("precision")), (mine.get("recall"), theirs.get("recall"))]
                cells = []
                for pair in values:
                    cells += [
                        _cell(percent(pair[0]), bold=_is_best(pair[0], pair, True)),
                        _cell(percent(pair[1]), bold=_is_best(pair[1], pair, True)),
                    ]
            else:
                cells = [_cell(percent(mine.get("precision"))), _cell(percent(mine.get("recall")))]
            cells.append(_cell(str(mine.get("support", 0))))
            for column, cell in enumerate(cells):
                table.setItem(row, column, cell)
        _fit(table)


def _fill_confusion(table: QTableWidget, report: Report) -> None:
    classes: list[str] = list(report.get("classes") or [])
    matrix: list[list[int]] = report.get("confusion") or []
    table.setRowCount(len(classes))
    table.setColumnCount(len(classes))
    table.setHorizontalHeaderLabels(classes)
    table.setVerticalHeaderLabels(classes)
    for row, counts in enumerate(matrix):
        for column, count in enumerate(counts):
            item = _cell(str(count), bold=row == column and count > 0)
            if count:
                item.setBackground(QBrush(_HIT_COLOR if row == column else _MISS_COLOR))
            table.setItem(row, column, item)
    table.setToolTip(
        "Rows: the labels you gave. Columns: what the model tagged them as. The diagonal holds the right answers."
    )
    _fit(table)


def _is_best(value: float | None, values: Sequence[float | None], higher_is_better: bool) -> bool:
    known = [v for v in values if v is not None]
    if value is None or len(known) < 2 or len(set(known)) == 1:
        return False
    return value == (max(known) if higher_is_better else min(known))


def _cell(text: str, *, bold: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if bold:
        font = QFont(item.font())
        font.setBold(True)
        item.setFont(font)
    return item


def _table(name: str, *, full_width: bool = False) -> QTableWidget:
    table = QTableWidget()
    table.setObjectName(name)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setAlternatingRowColors(False)
    table.setBackgroundRole(QPalette.ColorRole.Base)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    table.setHorizontalScrollBarPolicy(
        Qt.ScrollBarPolicy.ScrollBarAsNeeded if full_width else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    )
    if full_width:
        table.horizontalHeader().setStretchLastSection(True)
    horizontal = QSizePolicy.Policy.Expanding if full_width else QSizePolicy.Policy.Fixed
    table.setSizePolicy(horizontal, QSizePolicy.Policy.Fixed)
    return table


def _fit(table: QTableWidget) -> None:
    """Exactly as big as its cells (up to a dozen rows), so every number shows without scrolling."""
    table.resizeColumnsToContents()
    table.resizeRowsToContents()
    frame = 2 * table.frameWidth()
    rows = min(table.rowCount(), 12)
    header_height = max(table.horizontalHeader().sizeHint().height(), table.fontMetrics().height() + 8)
    table.setFixedHeight(frame + header_height + sum(table.rowHeight(row) for row in range(rows)))
    header_width = max(
        table.verticalHeader().sizeHint().width(),
        max(
            (
                table.fontMetrics().horizontalAdvance(table.verticalHeaderItem(row).text())
                for row in range(table.rowCount())
                if table.verticalHeaderItem(row)
            ),
            default=0,
        )
        + 12,
    )
    width = frame + header_width + sum(table.columnWidth(column) for column in range(table.columnCount()))
    if table.sizePolicy().horizontalPolicy() == QSizePolicy.Policy.Fixed:
        table.setFixedWidth(width)
    else:
        table.setMinimumWidth(min(width, 640))
