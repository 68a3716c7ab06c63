"""The thumbnail grid: a virtualised list view and the delegate that paints each tile.

Qt only asks the delegate to paint the tiles on screen, and with uniform item
sizes the view lays out 100,000 rows without measuring each one; so the grid
costs the same whatever the size of the library.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QFontMetrics,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from tagger.gui.photos.model import PhotoListModel, PhotoRole
from tagger.gui.photos.table import LabelOrigin
from tagger.gui.photos.thumbnails import ThumbnailProvider
from tagger.gui.widgets.palette import class_color, text_color_on

AnyIndex = QModelIndex | QPersistentModelIndex

DEFAULT_TILE_SIZE = 160
MIN_TILE_SIZE = 80
MAX_TILE_SIZE = 320
_PADDING = 6
_CHIP_GAP = 4


class TileDelegate(QStyledItemDelegate):
    """Paints a tile: the thumbnail (or a placeholder) and a chip for the label.

    A confirmed label is a solid chip with a check mark; a model's guess is an
    outlined chip with its confidence, so the two read differently at a glance."""

    def __init__(self, thumbnails: ThumbnailProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._thumbnails = thumbnails
        self._image_size = DEFAULT_TILE_SIZE
        # Placeholders drawn once per look (size, note, palette, font, screen) and then copied:
        # while scrolling fast most tiles show one, and drawing its shapes from Python every
        # time was the largest part of a tile's paint (bench/scale.py).
        self._placeholders: dict[tuple, QPixmap] = {}

    @property
    def image_size(self) -> int:
        return self._image_size

    def set_image_size(self, size: int) -> None:
        self._image_size = max(MIN_TILE_SIZE, min(MAX_TILE_SIZE, size))

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        chip_height = self._chip_height(option.fontMetrics)
        return QSize(self._image_size + 2 * _PADDING, self._image_size + chip_height + 2 * _PADDING + _CHIP_GAP)

    @staticmethod
    def _chip_height(metrics: QFontMetrics) -> int:
        return metrics.height() + 6

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = option.palette
        tile = option.rect.adjusted(1, 1, -1, -1)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        self._paint_background(painter, tile, palette, selected, option)

        image_rect = QRect(tile.left() + _PADDING - 1, tile.top() + _PADDING - 1, self._image_size, self._image_size)
        self._paint_picture(painter, image_rect, palette, index, option)

        chip_top = image_rect.bottom() + _CHIP_GAP
        chip_rect = QRect(image_rect.left(), chip_top, image_rect.width(), self._chip_height(option.fontMetrics))
        self._paint_chip(painter, chip_rect, palette, index, option.font)
        painter.restore()

    # -- parts -------------------------------------------------------------------

    @staticmethod
    def _paint_background(
        painter: QPainter, tile: QRect, palette: QPalette, selected: bool, option: QStyleOptionViewItem
    ) -> None:
        if selected:
            highlight = QColor(palette.color(QPalette.ColorRole.Highlight))
            fill = QColor(highlight)
            fill.setAlpha(70)
            painter.setPen(QPen(highlight, 2))
            painter.setBrush(fill)
            painter.drawRoundedRect(QRectF(tile), 6, 6)
        elif option.state & QStyle.StateFlag.State_MouseOver:
            hover = QColor(palette.color(QPalette.ColorRole.Highlight))
            hover.setAlpha(30)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(hover)
            painter.drawRoundedRect(QRectF(tile), 6, 6)
        if option.state & QStyle.StateFlag.State_HasFocus:
            pen = QPen(palette.color(QPalette.ColorRole.Highlight), 1, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(tile).adjusted(2, 2, -2, -2), 5, 5)

    def _paint_picture(
        self, painter: QPainter, area: QRect, palette: QPalette, index: AnyIndex, option: QStyleOptionViewItem
    ) -> None:
        readable = index.data(PhotoRole.READABLE)
        missing = index.data(PhotoRole.MISSING)
        content_hash = index.data(PhotoRole.CONTENT_HASH)
        pixmap = None
        if readable:
            ratio = option.widget.devicePixelRatioF() if option.widget is not None else 1.0
            pixel_size = round(self._image_size * ratio)
            pixmap = self._thumbnails.pixmap(
                index.data(PhotoRole.ID), index.data(PhotoRole.PATH), content_hash, pixel_size
            )
        if pixmap is not None:
            # Drawn into a logical rectangle sized from device pixels: one image
            # pixel per screen pixel, so HiDPI screens get a sharp thumbnail.
            ratio = max(1.0, max(pixmap.width(), pixmap.height()) / self._image_size)
            width, height = pixmap.width() / ratio, pixmap.height() / ratio
            target = QRectF(
                area.left() + (area.width() - width) / 2, area.top() + (area.height() - height) / 2, width, height
            )
            if missing:
                painter.setOpacity(0.45)
            painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
            painter.setOpacity(1.0)
            if missing:
                self._paint_badge(painter, area, palette, "Missing")
            return
        failure = self._thumbnails.failure(content_hash)
        if not readable:
            note = "Unreadable"
        elif missing:
            note = "Missing"
        elif failure:
            note = "Cannot show"
        else:
            note = ""
        self._draw_placeholder(painter, area, palette, note)

    def _draw_placeholder(self, painter: QPainter, area: QRect, palette: QPalette, note: str) -> None:
        ratio = painter.device().devicePixelRatioF()
        font = painter.font()
        key = (area.width(), area.height(), note, palette.cacheKey(), ratio, font.key())
        pixmap = self._placeholders.get(key)
        if pixmap is None:
            if len(self._placeholders) > 64:
                self._placeholders.clear()  # palettes or sizes keep changing: start over
            pixmap = QPixmap(round(area.width() * ratio), round(area.height() * ratio))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(Qt.GlobalColor.transparent)
            canvas = QPainter(pixmap)
            canvas.setRenderHint(QPainter.RenderHint.Antialiasing)
            canvas.setFont(font)
            self._paint_placeholder(canvas, QRect(0, 0, area.width(), area.height()), palette, note)
            canvas.end()
            self._placeholders[key] = pixmap
        painter.drawPixmap(area.topLeft(), pixmap)

    @staticmethod
    def _paint_placeholder(painter: QPainter, area: QRect, palette: QPalette, note: str) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase))
        painter.drawRoundedRect(QRectF(area).adjusted(4, 4, -4, -4), 4, 4)
        # A faint outline of a landscape picture: reads as "a photo goes here".
        glyph = QColor(palette.color(QPalette.ColorRole.PlaceholderText))
        glyph.setAlpha(110)
        painter.setPen(QPen(glyph, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        side = area.width() // 4
        center = area.center()
        frame = QRect(center.x() - side // 2, center.y() - side // 2 - (8 if note else 0), side, side * 3 // 4)
        painter.drawRoundedRect(QRectF(frame), 3, 3)
        mountain = QPainterPath()
        mountain.moveTo(frame.left() + 2, frame.bottom() - 2)
        mountain.lineTo(frame.left() + side * 0.4, frame.top() + side * 0.3)
        mountain.lineTo(frame.right() - 2, frame.bottom() - 2)
        painter.drawPath(mountain)
        if note:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            text_rect = QRect(area.left(), frame.bottom() + 6, area.width(), painter.fontMetrics().height())
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, note)

    @staticmethod
    def _paint_badge(painter: QPainter, area: QRect, palette: QPalette, text: str) -> None:
        metrics = painter.fontMetrics()
        badge = QRect(area.left() + 6, area.top() + 6, metrics.horizontalAdvance(text) + 12, metrics.height() + 4)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.color(QPalette.ColorRole.ToolTipBase))
        painter.drawRoundedRect(QRectF(badge), 4, 4)
        painter.setPen(palette.color(QPalette.ColorRole.ToolTipText))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)

    @staticmethod
    def _paint_chip(painter: QPainter, row: QRect, palette: QPalette, index: AnyIndex, font: QFont) -> None:
        label = index.data(PhotoRole.LABEL)
        if label is None and not index.data(PhotoRole.READABLE):
            return  # the placeholder already says "Unreadable"
        if label is None:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                row.adjusted(4, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, "unlabeled"
            )
            return
        color = class_color(index.data(PhotoRole.LABEL_POSITION))
        confirmed = index.data(PhotoRole.ORIGIN) == LabelOrigin.USER
        confidence = index.data(PhotoRole.CONFIDENCE)
        metrics = QFontMetrics(font)
        text = chip_text(label, confirmed, None if confirmed else confidence, metrics, row.width() - 14)
        chip = QRectF(row.left(), row.top(), min(row.width(), metrics.horizontalAdvance(text) + 14), row.height())
        radius = row.height() / 2
        if confirmed:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(chip, radius, radius)
            painter.setPen(text_color_on(color))
        else:
            # Outlined, over a faint wash of the class colour: tells "guess" from
            # "confirmed" without relying on colour alone.
            wash = QColor(color)
            wash.setAlpha(40)
            painter.setBrush(wash)
            painter.setPen(QPen(color, 1.6, Qt.PenStyle.DashLine))
            painter.drawRoundedRect(chip.adjusted(0.8, 0.8, -0.8, -0.8), radius, radius)
            painter.setPen(palette.color(QPalette.ColorRole.Text))
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, text)


def chip_text(label: str, confirmed: bool, confidence: float | None, metrics: QFontMetrics, width: int) -> str:
    """ "✓ dog" for the user's label, "elephant  87%" for a guess; a long name is shortened, never the number.

    Shortening the whole text cut the percentage first: "elephant 1…" could be 19% or 99%."""
    if confirmed:
        return metrics.elidedText(f"\u2713 {label}", Qt.TextElideMode.ElideRight, width)
    if confidence is None:
        return metrics.elidedText(label, Qt.TextElideMode.ElideRight, width)
    percentage = f"  {confidence:.0%}"
    name = metrics.elidedText(label, Qt.TextElideMode.ElideRight, max(0, width - metrics.horizontalAdvance(percentage)))
    return (name or label[:1] + "\u2026") + percentage


LAYOUT_BATCH = 500


class GalleryView(QListView):
    """The grid. Knows nothing about labels: actions added to it provide keys and the context menu."""

    current_photo_changed = Signal(object)  # photo id, or None when nothing is current

    def __init__(self, model: PhotoListModel, thumbnails: ThumbnailProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._thumbnails = thumbnails
        self._delegate = TileDelegate(thumbnails, self)
        self.setItemDelegate(self._delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        # Static movement keeps the simple flow layout (IconMode would otherwise
        # store a free position for every one of 100,000 items).
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        # Laid out in batches between turns of the event loop: a grid of 10,000 laid out in one
        # pass took 40-76 ms each time an import added photos (bench/responsiveness.py).
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(LAYOUT_BATCH)
        # The tiles wrap to the view's width, so there is never anything to the side; while a
        # batched layout is under way QListView would otherwise flash a horizontal scroll bar.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSpacing(4)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionRectVisible(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        # Drops belong to the window (import anywhere), not to the list.
        self.setDragEnabled(False)
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setDragDropMode(QAbstractItemView.DragDropMode.NoDragDrop)
        self.setModel(model)
        self.setAccessibleName("Photos")
        self._apply_grid_size()
        thumbnails.thumbnail_ready.connect(self._repaint_photo)
        thumbnails.thumbnail_failed.connect(self._repaint_failed_photo)
        self.selectionModel().currentChanged.connect(self._announce_current)
        model.modelReset.connect(self._announce_current_after_reset)

    def photo_model(self) -> PhotoListModel:
        model = self.model()
        assert isinstance(model, PhotoListModel)
        return model

    # -- tile size ---------------------------------------------------------------

    @property
    def tile_size(self) -> int:
        return self._delegate.image_size

    def set_tile_size(self, size: int) -> None:
        if size == self._delegate.image_size:
            return
        self._delegate.set_image_size(size)
        self._thumbnails.forget_memory()
        self._apply_grid_size()

    def _apply_grid_size(self) -> None:
        option = QStyleOptionViewItem()
        option.initFrom(self)
        hint = self._delegate.sizeHint(option, QModelIndex())
        cell = QSize(hint.width() + self.spacing(), hint.height() + self.spacing())
        # Share the leftover width among the columns, so the grid fills the view
        # instead of leaving a ragged empty band on the right.
        width = max(1, self.viewport().width() - 1)
        columns = max(1, width // cell.width())
        cell.setWidth(max(cell.width(), width // columns))
        if cell != self.gridSize():
            self.setGridSize(cell)
            self.scheduleDelayedItemsLayout()
            self.viewport().update()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._apply_grid_size()

    # -- selection -----------------------------------------------------------------

    def selected_rows(self) -> list[int]:
        return sorted(index.row() for index in self.selectionModel().selectedIndexes())

    def selected_photo_ids(self) -> list[int]:
        return self.photo_model().photo_ids(self.selected_rows())

    def current_photo_id(self) -> int | None:
        index = self.currentIndex()
        return self.photo_model().photo_id(index.row()) if index.isValid() else None

    def select_row(self, row: int) -> None:
        """Make `row` the only selected photo and the current one, scrolled into view."""
        model = self.photo_model()
        if not 0 <= row < model.rowCount():
            return
        index = model.index(row)
        self.selectionModel().setCurrentIndex(index, self.selectionModel().SelectionFlag.ClearAndSelect)
        self.scrollTo(index)

    def select_photo(self, photo_id: int) -> bool:
        row = self.photo_model().row_of(photo_id)
        if row is None:
            return False
        self.select_row(row)
        return True

    def advance_past(self, rows: list[int]) -> None:
        """After labeling: move on to the photo after the last one labeled (stays put at the end)."""
        if not rows:
            return
        following = max(rows) + 1
        if following < self.photo_model().rowCount():
            self.select_row(following)
        elif len(rows) > 1:
            self.select_row(max(rows))

    # -- repaints --------------------------------------------------------------------

    def _repaint_photo(self, photo_id: int) -> None:
        index = self.photo_model().index_of(photo_id)
        if index.isValid():
            self.viewport().update(self.visualRect(index))

    def _repaint_failed_photo(self, photo_id: int, _reason: str) -> None:
        self._repaint_photo(photo_id)

    def _announce_current(self, current: QModelIndex, _previous: QModelIndex = QModelIndex()) -> None:
        self.current_photo_changed.emit(self.photo_model().photo_id(current.row()) if current.isValid() else None)

    def _announce_current_after_reset(self) -> None:
        self._announce_current(self.currentIndex())

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        # Right-clicking a photo outside the selection acts on that photo, as in file managers.
        index = self.indexAt(event.pos())
        if index.isValid() and not self.selectionModel().isSelected(index):
            self.select_row(index.row())
        if self.actions():
            QMenu.exec(self.actions(), event.globalPos(), None, self)
