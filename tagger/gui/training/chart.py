"""A live line chart of a training run: loss on the left axis, held-out accuracy on the right.

Drawn with QPainter (QtCharts is not part of PySide6-Essentials). Loss comes with every
optimiser step or batch; held-out accuracy only when a fold or an epoch ends, so it is
drawn as dots joined by a line, where each dot is a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor("#3f88c5")
ACCURACY_COLOR = QColor("#d9822b")
# More points than pixels only slows painting; past this many, every other point is dropped.
_MAX_POINTS = 2000


@dataclass(frozen=True)
class ChartPoint:
    step: int
    loss: float
    held_out_accuracy: float | None  # the latest known, or None before the first fold/epoch ends


class TrainingChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._points: list[ChartPoint] = []
        self._total = 1
        self._step_name = "step"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName("Training progress chart")

    # -- data ----------------------------------------------------------------------

    def reset(self, step_name: str) -> None:
        """Start over for a run whose x axis counts `step_name`s (optimiser steps, batches)."""
        self._points = []
        self._total = 1
        self._step_name = step_name
        self.update()

    def add_points(self, points: Sequence[ChartPoint], total: int) -> None:
        self._total = max(1, total)
        self._points.extend(points)
        if len(self._points) > _MAX_POINTS:
            self._points = self._points[::2]
        self.update()

    def points(self) -> list[ChartPoint]:
        return list(self._points)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(560, 220)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(260, 140)

    # -- painting ------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        metrics = QFontMetrics(self.font())
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        loss_top = self._loss_top()
        plot = self.plot_area()

        self._paint_grid(painter, plot, metrics)
        self._paint_legend(painter, plot, metrics)
        if not self._points:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "Waiting for the first step…")
            return
        self._paint_loss(painter, plot, loss_top)
        self._paint_accuracy(painter, plot)

    def loss_labels(self) -> list[str]:
        """The left axis's labels, bottom to top."""
        loss_top = self._loss_top()
        return [_short(loss_top * tick / 4) for tick in range(5)]

    def plot_area(self) -> QRectF:
        """Where the lines go: the rest holds the legend and the axes' labels."""
        metrics = QFontMetrics(self.font())
        # As wide as the widest loss label: a fixed width cut "0.0005" to ".0005" once the loss got small.
        left = max(metrics.horizontalAdvance(label) for label in self.loss_labels()) + 14
        right = metrics.horizontalAdvance("100%") + 14
        top = metrics.height() + 12
        bottom = metrics.height() * 2 + 10
        return QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))

    def _loss_top(self) -> float:
        losses = [p.loss for p in self._points if math.isfinite(p.loss)]
        return _nice_ceiling(max(losses)) if losses else 1.0

    def _x(self, plot: QRectF, step: int) -> float:
        return plot.left() + plot.width() * min(step, self._total) / self._total

    def _paint_grid(self, painter: QPainter, plot: QRectF, metrics: QFontMetrics) -> None:
        text = self.palette().color(QPalette.ColorRole.WindowText)
        grid = QColor(self.palette().color(QPalette.ColorRole.Mid))
        grid.setAlpha(90)
        height = metrics.height()
        labels = self.loss_labels()
        for tick in range(5):
            fraction = tick / 4
            y = plot.bottom() - plot.height() * fraction
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DashLine if tick else Qt.PenStyle.SolidLine))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(LOSS_COLOR)
            painter.drawText(
                QRectF(0, y - height / 2, plot.left() - 6, height),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                labels[tick],
            )
            painter.setPen(ACCURACY_COLOR)
            painter.drawText(
                QRectF(plot.right() + 6, y - height / 2, 60, height),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                f"{round(100 * fraction)}%",
            )
        painter.setPen(QPen(grid, 1))
        painter.drawLine(plot.bottomLeft(), plot.topLeft())
        painter.drawLine(plot.bottomRight(), plot.topRight())
        painter.setPen(text)
        below = QRectF(plot.left(), plot.bottom() + 4, plot.width(), height)
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, "0")
        painter.drawText(below, Qt.AlignmentFlag.AlignRight, str(self._total))
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 4 + height, plot.width(), height),
            Qt.AlignmentFlag.AlignHCenter,
            self._step_name,
        )

    def _paint_legend(self, painter: QPainter, plot: QRectF, metrics: QFontMetrics) -> None:
        x = plot.left()
        y = plot.top() - metrics.height() - 6
        for name, color in (("loss (left)", LOSS_COLOR), ("held-out accuracy (right)", ACCURACY_COLOR)):
            painter.setPen(QPen(color, 3))
            painter.drawLine(QPointF(x, y + metrics.height() / 2), QPointF(x + 18, y + metrics.height() / 2))
            painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            painter.drawText(QPointF(x + 24, y + metrics.ascent()), name)
            x += 24 + metrics.horizontalAdvance(name) + 22

    def _paint_loss(self, painter: QPainter, plot: QRectF, loss_top: float) -> None:
        path = QPainterPath()
        started = False
        for point in self._points:
            if not math.isfinite(point.loss):
                continue
            position = QPointF(
                self._x(plot, point.step), plot.bottom() - plot.height() * min(1.0, point.loss / loss_top)
            )
            if started:
                path.lineTo(position)
            else:
                path.moveTo(position)
                started = True
        painter.setPen(QPen(LOSS_COLOR, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)

    def _paint_accuracy(self, painter: QPainter, plot: QRectF) -> None:
        measured: list[QPointF] = []
        previous: float | None = None
        last = len(self._points) - 1
        for number, point in enumerate(self._points):
            accuracy = point.held_out_accuracy
            # Repeated between measurements; the run's final score is a measurement of its own.
            if accuracy is None or (accuracy == previous and number != last):
                continue
            previous = accuracy
            measured.append(QPointF(self._x(plot, point.step), plot.bottom() - plot.height() * accuracy))
        if not measured:
            return
        painter.setPen(QPen(ACCURACY_COLOR, 2))
        for start, end in zip(measured, measured[1:]):
            painter.drawLine(start, end)
        painter.setBrush(ACCURACY_COLOR)
        for dot in measured:
            painter.drawEllipse(dot, 3.5, 3.5)


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value`: axis labels people can read."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power


def _short(value: float) -> str:
    return f"{value:.3g}"
