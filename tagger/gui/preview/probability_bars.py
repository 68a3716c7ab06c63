"""The model's probability for every class, as labelled horizontal bars."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget


@dataclass(frozen=True)
class ClassProbability:
    name: str
    probability: float
    color: QColor


class ProbabilityBars(QWidget):
    class_clicked = Signal(str)  # a class's row was clicked (e.g. to see the evidence for it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ClassProbability] = []
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def set_probabilities(self, rows: Sequence[ClassProbability]) -> None:
        self._rows = list(rows)
        self.setAccessibleDescription(", ".join(f"{r.name} {r.probability:.0%}" for r in self._rows))
        self.updateGeometry()
        self.update()

    def probabilities(self) -> list[ClassProbability]:
        return list(self._rows)

    def class_at(self, y: float) -> str | None:
        row = int(y // self._row_height())
        return self._rows[row].name if 0 <= row < len(self._rows) else None

    def set_clickable(self, hint: str) -> None:
        """Say (in the tooltip) what clicking a class does, and show a hand over the rows."""
        self.setToolTip(hint)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        name = self.class_at(event.position().y())
        if name is not None and event.button() == Qt.MouseButton.LeftButton:
            self.class_clicked.emit(name)
            return
        super().mousePressEvent(event)

    def _row_height(self) -> int:
        return self.fontMetrics().height() + 6

    def sizeHint(self) -> QSize:
        return QSize(220, max(1, len(self._rows)) * self._row_height())

    def minimumSizeHint(self) -> QSize:
        return QSize(120, self.sizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        if not self._rows:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = self.fontMetrics()
        bold = QFont(self.font())
        bold.setBold(True)
        # Measured in bold: the best class's name is drawn bold and must not be cut.
        bold_metrics = QFontMetrics(bold)
        name_width = min(self.width() // 3, max(bold_metrics.horizontalAdvance(r.name) for r in self._rows) + 8)
        percent_width = metrics.horizontalAdvance("100%") + 8
        bar_width = max(10, self.width() - name_width - percent_width)
        row_height = self._row_height()
        best = max(self._rows, key=lambda r: r.probability)
        track = QColor(self.palette().color(QPalette.ColorRole.Mid))
        track.setAlpha(60)
        for row_number, row in enumerate(self._rows):
            top = row_number * row_height
            font = QFont(self.font())
            font.setBold(row is best)
            painter.setFont(font)
            painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            painter.drawText(
                QRectF(0, top, name_width - 4, row_height),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                (bold_metrics if row is best else metrics).elidedText(
                    row.name, Qt.TextElideMode.ElideRight, name_width - 8
                ),
            )
            bar = QRectF(name_width, top + 4, bar_width, row_height - 8)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(track)
            painter.drawRoundedRect(bar, 3, 3)
            filled = QRectF(bar.left(), bar.top(), bar.width() * max(0.0, min(1.0, row.probability)), bar.height())
            painter.setBrush(row.color)
            painter.drawRoundedRect(filled, 3, 3)
            painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            painter.drawText(
                QRectF(bar.right(), top, percent_width, row_height),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                f"{row.probability:.0%}",
            )
