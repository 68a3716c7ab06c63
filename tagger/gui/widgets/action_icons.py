"""Small toolbar icons drawn in code, in one accent colour that reads on light and dark themes.

The style's standard icons are drawn for a light theme (a black triangle vanishes on a
dark toolbar), and icon themes are missing on many Linux desktops and under Xvfb."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

ACCENT = QColor("#3f88c5")
_SIZES = (16, 24, 32)


def _icon(draw) -> QIcon:  # noqa: ANN001 - draw(painter, side)
    icon = QIcon()
    for side in _SIZES:
        pixmap = QPixmap(side, side)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        draw(painter, float(side))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def play_icon(color: QColor = ACCENT) -> QIcon:
    """A right-pointing triangle: start."""

    def draw(painter: QPainter, side: float) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPolygon(
            QPolygonF(
                [QPointF(side * 0.25, side * 0.15), QPointF(side * 0.85, side * 0.5), QPointF(side * 0.25, side * 0.85)]
            )
        )

    return _icon(draw)


def repeat_icon(color: QColor = ACCENT) -> QIcon:
    """An open circle with an arrow head: do it all again."""

    def draw(painter: QPainter, side: float) -> None:
        margin = side * 0.18
        ring = QRectF(margin, margin, side - 2 * margin, side - 2 * margin)
        painter.setPen(QPen(color, max(1.5, side / 9), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawArc(ring, 60 * 16, 280 * 16)  # Qt angles are sixteenths of a degree
        head = QPainterPath()
        tip = QPointF(side * 0.78, side * 0.12)
        head.moveTo(tip)
        head.lineTo(QPointF(side * 0.86, side * 0.42))
        head.lineTo(QPointF(side * 0.56, side * 0.36))
        head.closeSubpath()
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPath(head)

    return _icon(draw)
