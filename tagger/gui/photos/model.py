"""The Qt item model over the library's photos, filtered and sorted."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from tagger.gui.photos.table import LabelOrigin, PhotoFilter, PhotoTable, SortOrder
from tagger.library.library import Library

AnyIndex = QModelIndex | QPersistentModelIndex


class PhotoRole(enum.IntEnum):
    ID = Qt.ItemDataRole.UserRole + 1
    PATH = enum.auto()
    CONTENT_HASH = enum.auto()
    LABEL = enum.auto()  # class name or None
    LABEL_POSITION = enum.auto()  # index into class_names, -1 when unlabeled
    ORIGIN = enum.auto()  # LabelOrigin
    CONFIDENCE = enum.auto()  # float or None
    READABLE = enum.auto()
    MISSING = enum.auto()
    ERROR = enum.auto()


class PhotoListModel(QAbstractListModel):
    """One row per shown photo. Reads through a Store; never writes.

    Rows whose label changes stay where they are until the filter or sort is
    applied again, so the photo the user just labeled does not jump away."""

    counts_changed = Signal()

    def __init__(self, library: Library, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._table = PhotoTable()
        self._shown: list[int] = []  # table indexes, in display order
        self._row_of_index: dict[int, int] | None = None
        self._filter = PhotoFilter()
        self._order = SortOrder.ADDED
        # A hand-picked list (review queue, suspects) shown in its own order instead of the sort order.
        self._listed: list[int] | None = None

    # -- Qt interface ----------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._shown)

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._shown):
            return None
        i = self._shown[index.row()]
        table = self._table
        if role == Qt.ItemDataRole.DisplayRole:
            return table.names[i]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(i)
        if role == PhotoRole.ID:
            return table.ids[i]
        if role == PhotoRole.PATH:
            return table.paths[i]
        if role == PhotoRole.CONTENT_HASH:
            return table.hashes[i]
        if role == PhotoRole.LABEL:
            return table.label_name(i)
        if role == PhotoRole.LABEL_POSITION:
            return table.labels[i]
        if role == PhotoRole.ORIGIN:
            return LabelOrigin(table.origins[i])
        if role == PhotoRole.CONFIDENCE:
            return table.confidences[i]
        if role == PhotoRole.READABLE:
            return table.readable[i]
        if role == PhotoRole.MISSING:
            return table.missing[i]
        if role == PhotoRole.ERROR:
            return table.errors[i]
        return None

    def roleNames(self) -> dict[int, bytes]:
        names = dict(super().roleNames())
        names.update({role.value: role.name.lower().encode() for role in PhotoRole})
        return names

    # -- what is shown -----------------------------------------------------------

    @property
    def photo_filter(self) -> PhotoFilter:
        return self._filter

    @property
    def sort_order(self) -> SortOrder:
        return self._order

    @property
    def listed(self) -> list[int] | None:
        return None if self._listed is None else list(self._listed)

    def set_listed(self, photo_ids: Sequence[int] | None) -> None:
        """Show only these photos, in this order (the filter still applies); None goes back to all."""
        self._listed = None if photo_ids is None else list(photo_ids)
        self._reselect()

    @property
    def class_names(self) -> list[str]:
        return list(self._table.class_names)

    def total_count(self) -> int:
        return len(self._table)

    def label_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per class over the whole library: (labeled, of which confirmed)."""
        return self._table.counts()

    def reload(self) -> None:
        """Read every photo again (after anything but additions and label changes)."""
        self.beginResetModel()
        self._table.load(self._library)
        self._shown = self._select()
        self._row_of_index = None
        self.endResetModel()
        self.counts_changed.emit()

    def set_filter(self, photo_filter: PhotoFilter) -> None:
        self._filter = photo_filter
        self._reselect()

    def set_sort_order(self, order: SortOrder) -> None:
        self._order = order
        self._reselect()

    def reapply(self) -> None:
        """Filter and sort again, e.g. so that photos labeled since leave an "Unlabeled" view."""
        self._reselect()

    def _reselect(self) -> None:
        self.beginResetModel()
        self._shown = self._select()
        self._row_of_index = None
        self.endResetModel()

    def _select(self) -> list[int]:
        if self._listed is not None:
            return self._table.select_listed(self._filter, self._listed)
        return self._table.select(self._filter, self._order)

    # -- changes -------------------------------------------------------------------

    def add_photos(self, photo_ids: Iterable[int]) -> None:
        """New photos from an import: shown at once, each in its sorted place if it passes the filter."""
        added = self._table.add(self._library, photo_ids)
        if not added:
            return
        if self._listed is not None:
            # New photos are not on the hand-picked list; they show when the list is closed.
            self.counts_changed.emit()
            return
        keep = self._table.matches(self._filter)
        key = self._table.sort_key(self._order)
        wanted = sorted((i for i in added if keep(i)), key=key)
        if wanted and self._order is SortOrder.ADDED:
            # Newest last: the whole batch goes in as one block at the end.
            first = len(self._shown)
            self.beginInsertRows(QModelIndex(), first, first + len(wanted) - 1)
            self._shown.extend(wanted)
            self._row_of_index = None
            self.endInsertRows()
        elif wanted:
            shown_keys = [key(i) for i in self._shown]
            for table_index in wanted:
                row = bisect.bisect_right(shown_keys, key(table_index))
                shown_keys.insert(row, key(table_index))
                self.beginInsertRows(QModelIndex(), row, row)
                self._shown.insert(row, table_index)
                self._row_of_index = None
                self.endInsertRows()
        self.counts_changed.emit()

    def refresh_photos(self, photo_ids: Iterable[int]) -> None:
        """Re-read photos whose label or file changed and repaint their tiles."""
        changed = set(self._table.refresh(self._library, photo_ids))
        if not changed:
            return
        rows = sorted(row for i in changed if (row := self._row_of_table_index(i)) is not None)
        for first, last in _runs(rows):
            self.dataChanged.emit(self.index(first), self.index(last))
        self.counts_changed.emit()

    def refresh_classes(self) -> None:
        """Classes were added or renamed: re-read them and every label."""
        self._table.reload_classes(self._library)
        self.reload()

    # -- lookups -------------------------------------------------------------------

    def photo_id(self, row: int) -> int:
        return self._table.ids[self._shown[row]]

    def photo_ids(self, rows: Iterable[int]) -> list[int]:
        ids, shown = self._table.ids, self._shown
        return [ids[shown[row]] for row in rows]

    def row_of(self, photo_id: int) -> int | None:
        table_index = self._table.index_of.get(photo_id)
        return None if table_index is None else self._row_of_table_index(table_index)

    def index_of(self, photo_id: int) -> QModelIndex:
        row = self.row_of(photo_id)
        return QModelIndex() if row is None else self.index(row)

    def _row_of_table_index(self, table_index: int) -> int | None:
        if self._row_of_index is None:
            self._row_of_index = {i: row for row, i in enumerate(self._shown)}
        return self._row_of_index.get(table_index)

    def _tooltip(self, i: int) -> str:
        table = self._table
        lines = [table.paths[i]]
        if table.missing[i]:
            lines.append("The file is missing")
        if not table.readable[i]:
            lines.append(f"Unreadable: {table.errors[i] or 'unknown reason'}")
        if table.ids[i] in table.near_duplicate_group:
            lines.append("Near-duplicate: a resized or re-encoded copy, or the photo it copies")
        label = table.label_name(i)
        if label is not None:
            confidence = table.confidences[i]
            if table.origins[i] == LabelOrigin.USER:
                lines.append(f"{label} (confirmed)")
            elif confidence is not None:
                lines.append(f"{label}: model guess, {confidence:.0%} sure")
            else:
                lines.append(f"{label}: model guess")
        return "\n".join(lines)


def _runs(sorted_rows: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive stretches of rows, so one dataChanged covers each stretch."""
    runs: list[tuple[int, int]] = []
    for row in sorted_rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
