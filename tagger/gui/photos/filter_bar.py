"""The row above the grid: which photos to show, in what order, and a file name search."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QWidget

from tagger.gui.photos.table import PhotoFilter, Show, SortOrder, SourceFilter

_SORT_NAMES = (
    (SortOrder.ADDED, "Date added"),
    (SortOrder.NAME, "Name"),
    (SortOrder.DATE, "Date taken"),
    (SortOrder.FOLDER, "Folder"),
    (SortOrder.LEAST_CONFIDENT, "Least confident first"),
)
_SOURCE_NAMES = (
    (SourceFilter.ANY, "Confirmed and guessed"),
    (SourceFilter.CONFIRMED, "Confirmed only"),
    (SourceFilter.GUESSED, "Guessed only"),
)
_SEARCH_DELAY_MS = 150
_SHOW_BOX_CHARACTERS = 10  # "Unreadable", "All photos" and most class names fit whole


_LEAVE_KEYS = (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Down)


class SearchBox(QLineEdit):
    """A search field that hands the keyboard back to the grid on Escape or Enter."""

    leave_requested = Signal()

    def event(self, event: QEvent) -> bool:
        # The label keys are window-wide shortcuts (label_actions.py). A line edit claims the keys
        # that type text, but not Enter: here Enter must end the search, not confirm a photo's tag.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and event.key() in _LEAVE_KEYS:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        if event.key() in _LEAVE_KEYS:
            if event.key() == Qt.Key.Key_Escape and self.text():
                self.clear()
            self.leave_requested.emit()
            return
        super().keyPressEvent(event)


class FilterBar(QWidget):
    filter_changed = Signal(object)  # PhotoFilter
    sort_changed = Signal(object)  # SortOrder

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.show_box = QComboBox()
        self.show_box.setAccessibleName("Show")
        self.source_box = QComboBox()
        self.source_box.setAccessibleName("Label source")
        for source, name in _SOURCE_NAMES:
            self.source_box.addItem(name, source.value)
        self.sort_box = QComboBox()
        self.sort_box.setAccessibleName("Sort by")
        for order, name in _SORT_NAMES:
            self.sort_box.addItem(name, order.value)
        self.search_box = SearchBox()
        self.search_box.setPlaceholderText("Search file names")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setAccessibleName("Search file names")
        self.search_box.setMinimumWidth(100)
        for box in (self.source_box, self.sort_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        # The class names are the user's and may be long: the box keeps one width and shortens
        # them, so a new class never widens the bar (and the window); its list shows them whole.
        self.show_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.show_box.setMinimumContentsLength(_SHOW_BOX_CHARACTERS)
        self.set_classes([])

        # Waits for a pause in typing: re-filtering 100,000 rows on every key would stutter.
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(_SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._announce_filter)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        for caption, box in (("Show", self.show_box), ("", self.source_box), ("Sort by", self.sort_box)):
            if caption:
                label = QLabel(caption)
                label.setBuddy(box)
                layout.addWidget(label)
            layout.addWidget(box)
        layout.addSpacing(12)
        layout.addWidget(self.search_box, 1)

        self.show_box.currentIndexChanged.connect(self._announce_filter)
        self.source_box.currentIndexChanged.connect(self._announce_filter)
        self.sort_box.currentIndexChanged.connect(lambda _i: self.sort_changed.emit(self.sort_order()))
        self.search_box.textChanged.connect(lambda _text: self._search_timer.start())
        self.search_box.leave_requested.connect(self.flush_search)

    def set_classes(self, class_names: Sequence[str]) -> None:
        """Offer one entry per class, keeping the current choice when it still exists."""
        previous = self.show_box.currentData()
        self.show_box.blockSignals(True)
        self.show_box.clear()
        self.show_box.addItem("All photos", _show_key(Show.ALL, None))
        self.show_box.addItem("Unlabeled", _show_key(Show.UNLABELED, None))
        self.show_box.addItem("Unreadable", _show_key(Show.UNREADABLE, None))
        self.show_box.addItem("Near-duplicates", _show_key(Show.NEAR_DUPLICATES, None))
        self.show_box.setItemData(
            self.show_box.count() - 1,
            "Resized or re-encoded copies found at import, group by group; Keep This One keeps the selected photo",
            Qt.ItemDataRole.ToolTipRole,
        )
        self.show_box.insertSeparator(self.show_box.count())
        for name in class_names:
            self.show_box.addItem(name, _show_key(Show.CLASS, name))
        found = self.show_box.findData(previous) if previous is not None else -1
        self.show_box.setCurrentIndex(max(0, found))
        self.show_box.blockSignals(False)

    def photo_filter(self) -> PhotoFilter:
        show, _, class_name = str(self.show_box.currentData() or Show.ALL.value).partition(":")
        return PhotoFilter(
            show=Show(show),
            class_name=class_name or None,
            source=SourceFilter(self.source_box.currentData()),
            search=self.search_box.text(),
        )

    def sort_order(self) -> SortOrder:
        return SortOrder(self.sort_box.currentData())

    def set_filter(self, photo_filter: PhotoFilter) -> None:
        """Choose the entries matching `photo_filter` (announces the change once)."""
        for box in (self.show_box, self.source_box):
            box.blockSignals(True)
        self.show_box.setCurrentIndex(
            max(0, self.show_box.findData(_show_key(photo_filter.show, photo_filter.class_name)))
        )
        self.source_box.setCurrentIndex(max(0, self.source_box.findData(photo_filter.source.value)))
        for box in (self.show_box, self.source_box):
            box.blockSignals(False)
        self.search_box.blockSignals(True)
        self.search_box.setText(photo_filter.search)
        self.search_box.blockSignals(False)
        self._announce_filter()

    def set_sort_order(self, order: SortOrder) -> None:
        self.sort_box.setCurrentIndex(max(0, self.sort_box.findData(order.value)))

    def flush_search(self) -> None:
        """Apply a pending search at once (tests, and Enter in the box)."""
        if self._search_timer.isActive():
            self._search_timer.stop()
            self._announce_filter()

    def drop_pending_search(self) -> None:
        """Forget a search still waiting for a pause in typing (the window is closing)."""
        self._search_timer.stop()

    def _announce_filter(self) -> None:
        self.filter_changed.emit(self.photo_filter())


def _show_key(show: Show, class_name: str | None) -> str:
    # Plain strings as item data: Qt compares them reliably in findData().
    return f"{show.value}:{class_name}" if class_name is not None else show.value
