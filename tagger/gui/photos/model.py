"""The Qt item model over the library's photos, filtered and sorted."""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from tagger.gui.photos.table import BLOCK_ROWS, LabelOrigin, PhotoFilter, PhotoTable, ShownPhoto, SortOrder
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


# The roles answered from a photo's columns (PhotoRole.ID comes from the row alone).
_PHOTO_ROLES = frozenset(
    int(role) for role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, *PhotoRole) if role != PhotoRole.ID
)


class PhotoListModel(QAbstractListModel):
    """One row per shown photo. Reads through the Library; never writes.

    Rows whose label changes stay where they are until the filter or sort is
    applied again, so the photo the user just labeled does not jump away."""

    counts_changed = Signal()

    def __init__(self, library: Library, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._table = PhotoTable()
        self._shown = np.zeros(0, dtype=np.int64)  # photo ids, in display order
        # (the shown ids sorted, the row of each): finds rows by photo id; made when first needed.
        self._row_lookup: tuple[np.ndarray, np.ndarray] | None = None
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
        if role == PhotoRole.ID:
            return int(self._shown[index.row()])
        if int(role) not in _PHOTO_ROLES:
            return None  # answered without reading the photo: views ask for roles nobody here sets
        photo = self._photo_at(index.row())
        if photo is None:
            return None  # removed from the library since it was listed; it goes at the next reload
        if role == Qt.ItemDataRole.DisplayRole:
            return photo.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(photo)
        if role == PhotoRole.PATH:
            return photo.path
        if role == PhotoRole.CONTENT_HASH:
            return photo.content_hash
        if role == PhotoRole.LABEL:
            return self._table.label_name(photo)
        if role == PhotoRole.LABEL_POSITION:
            return photo.label
        if role == PhotoRole.ORIGIN:
            return photo.origin
        if role == PhotoRole.CONFIDENCE:
            return photo.confidence
        if role == PhotoRole.READABLE:
            return photo.readable
        if role == PhotoRole.MISSING:
            return photo.missing
        return photo.error  # PhotoRole.ERROR, the last of _PHOTO_ROLES

    def roleNames(self) -> dict[int, bytes]:
        names = dict(super().roleNames())
        names.update({role.value: role.name.lower().encode() for role in PhotoRole})
        return names

    def _photo_at(self, row: int) -> ShownPhoto | None:
        photo_id = int(self._shown[row])
        photo = self._table.photo(photo_id)
        if photo is None:
            # The rows around it are about to be painted too: read them in the same query.
            start = row - row % BLOCK_ROWS
            self._table.read(self._library, self._shown[start : start + BLOCK_ROWS].tolist())
            photo = self._table.photo(photo_id)
        return photo

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
        self._show(self._select())
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
        self._show(self._select())
        self.endResetModel()

    def _show(self, photo_ids: np.ndarray) -> None:
        self._shown = photo_ids
        self._row_lookup = None

    def _select(self) -> np.ndarray:
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
        wanted = self._table.matching(self._filter, added)
        if wanted and self._order is SortOrder.ADDED:
            # Newest last: the whole batch goes in as one block at the end.
            first = len(self._shown)
            self.beginInsertRows(QModelIndex(), first, first + len(wanted) - 1)
            self._show(np.concatenate([self._shown, np.array(wanted, dtype=np.int64)]))
            self.endInsertRows()
        elif wanted:
            self._insert_in_order(wanted)
        self.counts_changed.emit()

    def _insert_in_order(self, photo_ids: list[int]) -> None:
        key = self._table.sort_key(self._order)
        photo_ids.sort(key=key)
        # Each photo's place among the rows shown, by bisection (a few keys read, whatever the
        # number of rows); photos that go to the same place go in together.
        places = [bisect.bisect_right(self._shown, key(photo_id), key=key) for photo_id in photo_ids]
        inserted = 0
        for place, group in itertools.groupby(zip(places, photo_ids), key=lambda pair: pair[0]):
            run = [photo_id for _place, photo_id in group]
            row = place + inserted
            self.beginInsertRows(QModelIndex(), row, row + len(run) - 1)
            self._show(np.insert(self._shown, row, run))
            self.endInsertRows()
            inserted += len(run)

    def refresh_photos(self, photo_ids: Iterable[int]) -> None:
        """Re-read photos whose label or file changed and repaint their tiles."""
        changed = self._table.refresh(self._library, photo_ids)
        if not changed:
            return
        for first, last in _runs(self._rows_of(changed).tolist()):
            self.dataChanged.emit(self.index(first), self.index(last))
        self.counts_changed.emit()

    def refresh_classes(self) -> None:
        """Classes were added or renamed: re-read them and every label."""
        self._table.reload_classes(self._library)
        self.reload()

    # -- lookups -------------------------------------------------------------------

    def photo_id(self, row: int) -> int:
        return int(self._shown[row])

    def photo_ids(self, rows: Iterable[int]) -> list[int]:
        return self._shown[np.fromiter(rows, dtype=np.int64)].tolist()

    def row_of(self, photo_id: int) -> int | None:
        rows = self._rows_of([photo_id])
        return int(rows[0]) if len(rows) else None

    def index_of(self, photo_id: int) -> QModelIndex:
        row = self.row_of(photo_id)
        return QModelIndex() if row is None else self.index(row)

    def _rows_of(self, photo_ids: Sequence[int]) -> np.ndarray:
        """The rows showing these photos, in row order."""
        if self._row_lookup is None:
            # Already in order in the usual case (by date added), which a stable sort sees at once.
            rows = np.argsort(self._shown, kind="stable")
            self._row_lookup = (self._shown[rows], rows)
        ids, rows = self._row_lookup
        wanted = np.array(photo_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
        found = ids[at] == wanted if len(ids) else np.zeros(len(wanted), dtype=bool)
        return np.sort(rows[at[found]])

    def _tooltip(self, photo: ShownPhoto) -> str:
        lines = [photo.path]
        if photo.missing:
            lines.append("The file is missing")
        if not photo.readable:
            lines.append(f"Unreadable: {photo.error or 'unknown reason'}")
        if self._table.has_near_duplicate(photo.id):
            lines.append("Near-duplicate: a resized or re-encoded copy, or the photo it copies")
        label = self._table.label_name(photo)
        if label is not None:
            if photo.origin == LabelOrigin.USER:
                lines.append(f"{label} (confirmed)")
            elif photo.confidence is not None:
                lines.append(f"{label}: model guess, {photo.confidence:.0%} sure")
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
