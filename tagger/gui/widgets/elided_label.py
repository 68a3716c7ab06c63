"""A one-line label that shortens its text to the width it is given, and never asks for more.

File names and paths can be hundreds of characters long. A plain QLabel asks for the
width of its whole text, and the layouts above it pass that on up to the window: one long
name widened the window past the screen's edge.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

# Enough to show that something is there when the label is squeezed to nothing.
_MIN_WIDTH = 40


class ElidedLabel(QLabel):
    """Plain text in one line, shortened with "…" where it does not fit; the full text is its tooltip.

    Shortened in the middle by default: both ends of a file name or a path are what
    people recognise (the folder, the camera's number, the extension)."""

    def __init__(
        self, text: str = "", mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._full_text = ""
        self._mode = mode
        self.setTextFormat(Qt.TextFormat.PlainText)
        # Ignored: the width comes from the layout alone, never from the text. A label that should
        # show its whole text when there is room takes Preferred and a maximum width instead.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full_text = text
        self.setToolTip(text)
        self._elide()

    def clear(self) -> None:
        self.setText("")

    def full_text(self) -> str:
        return self._full_text

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        # The whole text's width: where the layout has room (up to the label's maximum width), all of it shows.
        return QSize(
            self.fontMetrics().horizontalAdvance(self._full_text) + 2 * self.margin() + 4, super().sizeHint().height()
        )

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(_MIN_WIDTH, super().minimumSizeHint().height())

    def setFont(self, font: QFont) -> None:  # noqa: N802 - Qt's name
        super().setFont(font)
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        available = max(_MIN_WIDTH, self.contentsRect().width())
        super().setText(self.fontMetrics().elidedText(self._full_text, self._mode, available))
