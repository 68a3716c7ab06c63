"""A photo shown large: fitted to the space, or at 100% (one image pixel per screen pixel)."""

from __future__ import annotations

import enum

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QPalette, QPixmap
from PySide6.QtWidgets import QScrollArea, QSizePolicy, QWidget


class ZoomMode(enum.Enum):
    FIT = "fit"
    ACTUAL = "actual"  # 100%


class ImageCanvas(QWidget):
    """Paints one pixmap, an optional overlay stretched over it (e.g. a heatmap), or a note."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._full_size = QSize()  # the photo's real size in pixels, which the pixmap may be smaller than
        self._overlay: QPixmap | None = None
        self._overlay_opacity = 0.5
        self._note = ""
        self._mode = ZoomMode.FIT
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setBackgroundRole(QPalette.ColorRole.Base)
        self.setAutoFillBackground(True)

    def set_image(self, image: QImage | None, full_size: QSize | None = None) -> None:
        self._pixmap = None if image is None or image.isNull() else QPixmap.fromImage(image)
        self._full_size = (
            QSize(full_size)
            if full_size is not None and full_size.isValid()
            else (self._pixmap.size() if self._pixmap is not None else QSize())
        )
        self._note = ""
        self._resize_for_mode()
        self.update()

    def set_pixmap(self, pixmap: QPixmap | None, full_size: QSize | None = None) -> None:
        """Show a pixmap we already have (a thumbnail) while the full photo loads."""
        self._pixmap = pixmap
        self._full_size = (
            QSize(full_size)
            if full_size is not None and full_size.isValid()
            else (pixmap.size() if pixmap is not None else QSize())
        )
        self._note = ""
        # A stand-in for a photo just selected: at 100% it opens on its middle, not its top-left corner.
        self._resize_for_mode(centre=True)
        self.update()

    def set_note(self, text: str) -> None:
        """No picture, just words (nothing selected, unreadable photo...)."""
        self._pixmap = None
        self._overlay = None
        self._note = text
        self._resize_for_mode()
        self.update()

    def set_overlay(self, image: QImage | None, opacity: float = 0.5) -> None:
        self._overlay = None if image is None or image.isNull() else QPixmap.fromImage(image)
        self._overlay_opacity = max(0.0, min(1.0, opacity))
        self.update()

    def has_overlay(self) -> bool:
        return self._overlay is not None

    def image_pixel_size(self) -> QSize:
        return QSize(self._pixmap.size()) if self._pixmap is not None else QSize()

    @property
    def zoom_mode(self) -> ZoomMode:
        return self._mode

    def set_zoom_mode(self, mode: ZoomMode) -> None:
        self._mode = mode
        self._resize_for_mode(centre=True)
        self.update()

    def _actual_size(self) -> QSize:
        """Logical size at 100%: the photo's pixels divided by the screen's pixel ratio."""
        ratio = self.devicePixelRatioF() or 1.0
        size = self._full_size if self._full_size.isValid() else QSize()
        return QSize(round(size.width() / ratio), round(size.height() / ratio))

    def _resize_for_mode(self, centre: bool = False) -> None:
        """Fit the scroll area, or take the photo's real size in it; at 100% a photo of another
        size (a new photo) is scrolled to its middle, where the subject usually is. The same
        photo arriving decoded in full keeps the place the user scrolled to."""
        scroll = self._scroll_area()
        if scroll is None:
            return
        if self._mode is ZoomMode.ACTUAL and self._pixmap is not None:
            size = self._actual_size()
            centre = centre or scroll.widgetResizable() or size != self.size()
            scroll.setWidgetResizable(False)
            self.resize(size)
            if centre:
                self._centre_in_view()
                # Again once the scroll bars have settled: one appearing narrows the view and
                # moves the other's middle.
                QTimer.singleShot(0, self._centre_in_view)
        else:
            scroll.setWidgetResizable(True)

    def _centre_in_view(self) -> None:
        scroll = self._scroll_area()
        if scroll is None:
            return
        for bar in (scroll.horizontalScrollBar(), scroll.verticalScrollBar()):
            bar.setValue((bar.minimum() + bar.maximum()) // 2)

    def _scroll_area(self) -> QScrollArea | None:
        viewport = self.parentWidget()
        area = viewport.parentWidget() if viewport is not None else None
        return area if isinstance(area, QScrollArea) else None

    def image_rect(self) -> QRectF:
        """Where the picture is painted, in this widget's coordinates."""
        if self._pixmap is None:
            return QRectF()
        if self._mode is ZoomMode.ACTUAL:
            return QRectF(QPointF(0, 0), self._actual_size().toSizeF())
        bounds = QRectF(self.rect()).adjusted(8, 8, -8, -8)
        source = self._full_size.toSizeF() if self._full_size.isValid() else self._pixmap.size().toSizeF()
        # Small photos are enlarged too: for judging what is in a photo, bigger is better,
        # and 100% is one click away.
        scaled = source.scaled(bounds.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF(
            bounds.center().x() - scaled.width() / 2,
            bounds.center().y() - scaled.height() / 2,
            scaled.width(),
            scaled.height(),
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        if self._pixmap is None:
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._note,
            )
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.image_rect()
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
        if self._overlay is not None:
            painter.setOpacity(self._overlay_opacity)
            painter.drawPixmap(target, self._overlay, QRectF(self._overlay.rect()))
