"""The gallery's view of the library: every photo as a few compact columns.

One query (Library.gallery_rows) fills plain Python lists (no object per photo),
so a library of 100,000 photos loads in a fraction of a second; filtering and
sorting then run over those lists without going back to the database. No Qt
here: the item model in model.py adapts this table to the view.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tagger.library.library import Library

NO_LABEL = -1


class LabelOrigin(enum.IntEnum):
    NONE = 0
    MODEL = 1
    USER = 2


class Show(enum.Enum):
    ALL = "all"
    UNLABELED = "unlabeled"
    UNREADABLE = "unreadable"
    NEAR_DUPLICATES = "near_duplicates"  # photos in a group of near-duplicates, group by group
    CLASS = "class"  # only photos labeled with PhotoFilter.class_name


class SourceFilter(enum.Enum):
    ANY = "any"
    CONFIRMED = "confirmed"  # labeled by the user (or a model tag the user accepted)
    GUESSED = "guessed"  # labeled by the model, not yet confirmed


class SortOrder(enum.Enum):
    ADDED = "added"
    NAME = "name"
    DATE = "date"
    FOLDER = "folder"
    LEAST_CONFIDENT = "least_confident"


@dataclass(frozen=True)
class PhotoFilter:
    show: Show = Show.ALL
    class_name: str | None = None
    source: SourceFilter = SourceFilter.ANY
    search: str = ""  # part of the file name, any case


_SOURCE_CODES = {None: LabelOrigin.NONE, "model": LabelOrigin.MODEL, "user": LabelOrigin.USER}


class PhotoTable:
    """Columns indexed by table index (insertion order); `index_of` maps a photo id back."""

    def __init__(self) -> None:
        self.class_names: list[str] = []
        self._class_position: dict[int, int] = {}
        self.ids: list[int] = []
        self.paths: list[str] = []
        self.names: list[str] = []
        self.hashes: list[str | None] = []
        self.labels: list[int] = []  # position in class_names, or NO_LABEL
        self.origins: list[int] = []  # LabelOrigin values
        self.confidences: list[float | None] = []
        self.readable: list[bool] = []
        self.missing: list[bool] = []
        self.dates: list[float] = []  # when taken, or else the file's modification time
        self.errors: list[str | None] = []
        self.index_of: dict[int, int] = {}
        # Photo id -> the first photo id of its near-duplicate group (photos in no group are absent);
        # read when first asked for (the Near-duplicates filter, a tooltip), not at first paint.
        self._near_duplicate_group: dict[int, int] | None = None
        self._library: Library | None = None

    def __len__(self) -> int:
        return len(self.ids)

    # -- loading -----------------------------------------------------------------

    def load(self, library: Library) -> None:
        self._load_classes(library)
        rows = library.gallery_rows()
        self._clear()
        self._append_rows(rows)
        self._library = library
        self._near_duplicate_group = None

    def add(self, library: Library, photo_ids: Iterable[int]) -> list[int]:
        """Append photos not yet in the table; returns their table indexes."""
        new_ids = [i for i in dict.fromkeys(photo_ids) if i not in self.index_of]
        if not new_ids:
            return []
        first = len(self.ids)
        self._append_rows(library.gallery_rows(new_ids))
        # An import flags each new near-duplicate with one earlier photo: its group grows by it.
        group = self._near_duplicate_group
        if group is not None:
            for photo_id, earlier_id in library.near_duplicate_links(new_ids):
                group[photo_id] = group.setdefault(earlier_id, earlier_id)
        return list(range(first, len(self.ids)))

    @property
    def near_duplicate_group(self) -> dict[int, int]:
        if self._near_duplicate_group is None:
            groups = self._library.near_duplicate_id_groups() if self._library is not None else []
            self._near_duplicate_group = {photo_id: group[0] for group in groups for photo_id in group}
        return self._near_duplicate_group

    def refresh(self, library: Library, photo_ids: Iterable[int]) -> list[int]:
        """Re-read photos already in the table; returns the table indexes that changed."""
        known = [i for i in dict.fromkeys(photo_ids) if i in self.index_of]
        changed: list[int] = []
        for row in library.gallery_rows(known):
            index = self.index_of[row[0]]
            self._write_row(index, row)
            changed.append(index)
        return changed

    def reload_classes(self, library: Library) -> None:
        """Class list changed (added or renamed): labels must be re-read to keep positions right."""
        self._load_classes(library)

    def _load_classes(self, library: Library) -> None:
        classes = library.classes()
        self.class_names = [c.name for c in classes]
        self._class_position = {c.id: position for position, c in enumerate(classes)}

    def _clear(self) -> None:
        for column in (
            self.ids,
            self.paths,
            self.names,
            self.hashes,
            self.labels,
            self.origins,
            self.confidences,
            self.readable,
            self.missing,
            self.dates,
            self.errors,
        ):
            column.clear()
        self.index_of.clear()

    def _append_rows(self, rows: Sequence[Sequence]) -> None:
        if not rows:
            return
        ids, paths, hashes, class_ids, sources, confidences, readable, missing, dates, errors = zip(*rows)
        first = len(self.ids)
        self.ids.extend(ids)
        self.paths.extend(paths)
        self.names.extend(map(os.path.basename, paths))
        self.hashes.extend(hashes)
        position = self._class_position.get
        self.labels.extend(NO_LABEL if c is None else position(c, NO_LABEL) for c in class_ids)
        self.origins.extend(_SOURCE_CODES.get(s, LabelOrigin.NONE) for s in sources)
        self.confidences.extend(confidences)
        self.readable.extend(map(bool, readable))
        self.missing.extend(map(bool, missing))
        self.dates.extend(d or 0.0 for d in dates)
        self.errors.extend(errors)
        self.index_of.update(zip(ids, range(first, first + len(ids))))

    def _write_row(self, index: int, row: Sequence) -> None:
        (_id, path, content_hash, class_id, source, confidence, readable, missing, date, error) = row
        self.paths[index] = path
        self.names[index] = os.path.basename(path)
        self.hashes[index] = content_hash
        self.labels[index] = NO_LABEL if class_id is None else self._class_position.get(class_id, NO_LABEL)
        self.origins[index] = _SOURCE_CODES.get(source, LabelOrigin.NONE)
        self.confidences[index] = confidence
        self.readable[index] = bool(readable)
        self.missing[index] = bool(missing)
        self.dates[index] = date or 0.0
        self.errors[index] = error

    # -- reading -----------------------------------------------------------------

    def label_name(self, index: int) -> str | None:
        position = self.labels[index]
        return None if position == NO_LABEL else self.class_names[position]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per class: (photos labeled in total, of which the user confirmed)."""
        totals = dict.fromkeys(self.class_names, 0)
        confirmed = dict.fromkeys(self.class_names, 0)
        names = self.class_names
        for position, origin in zip(self.labels, self.origins):
            if position != NO_LABEL:
                totals[names[position]] += 1
                if origin == LabelOrigin.USER:
                    confirmed[names[position]] += 1
        return totals, confirmed

    # -- selecting -------------------------------------------------------------

    def matches(self, photo_filter: PhotoFilter) -> Callable[[int], bool]:
        """A predicate over table indexes for one filter (built once, applied to many rows)."""
        tests: list[Callable[[int], bool]] = []
        labels, origins, readable = self.labels, self.origins, self.readable
        if photo_filter.show is Show.UNLABELED:
            tests.append(lambda i: labels[i] == NO_LABEL and readable[i])
        elif photo_filter.show is Show.UNREADABLE:
            tests.append(lambda i: not readable[i])
        elif photo_filter.show is Show.NEAR_DUPLICATES:
            grouped, ids = self.near_duplicate_group, self.ids
            tests.append(lambda i: ids[i] in grouped)
        elif photo_filter.show is Show.CLASS:
            wanted = (
                self.class_names.index(photo_filter.class_name) if photo_filter.class_name in self.class_names else -2
            )
            tests.append(lambda i: labels[i] == wanted)
        if photo_filter.source is SourceFilter.CONFIRMED:
            tests.append(lambda i: origins[i] == LabelOrigin.USER)
        elif photo_filter.source is SourceFilter.GUESSED:
            tests.append(lambda i: origins[i] == LabelOrigin.MODEL)
        needle = photo_filter.search.strip().casefold()
        if needle:
            names = self.names
            tests.append(lambda i: needle in names[i].casefold())
        if not tests:
            return lambda _i: True
        if len(tests) == 1:
            return tests[0]
        return lambda i: all(test(i) for test in tests)

    def sort_key(self, order: SortOrder) -> Callable[[int], object]:
        ids = self.ids
        if order is SortOrder.ADDED:
            return ids.__getitem__
        if order is SortOrder.NAME:
            names = self.names
            return lambda i: (names[i].casefold(), ids[i])
        if order is SortOrder.DATE:
            dates = self.dates
            return lambda i: (dates[i], ids[i])
        if order is SortOrder.FOLDER:
            paths, names = self.paths, self.names
            return lambda i: (os.path.dirname(paths[i]).casefold(), names[i].casefold(), ids[i])
        origins, confidences = self.origins, self.confidences

        def least_confident_first(i: int) -> tuple[int, float, int]:
            # Guesses first, weakest on top; then photos with no label; confirmed ones last.
            if origins[i] == LabelOrigin.USER:
                return (2, 0.0, ids[i])
            confidence = confidences[i]
            if confidence is None or math.isnan(confidence):
                return (1, 0.0, ids[i])
            return (0, confidence, ids[i])

        return least_confident_first

    def select_listed(self, photo_filter: PhotoFilter, photo_ids: Sequence[int]) -> list[int]:
        """Table indexes of the listed photos that pass the filter, in the list's order."""
        keep = self.matches(photo_filter)
        index_of = self.index_of
        return [i for photo_id in photo_ids if (i := index_of.get(photo_id)) is not None and keep(i)]

    def select(self, photo_filter: PhotoFilter, order: SortOrder) -> list[int]:
        """Table indexes of the photos to show, in display order."""
        keep = self.matches(photo_filter)
        indexes = [i for i in range(len(self.ids)) if keep(i)]
        # Table order is already the order photos were added in.
        if order is not SortOrder.ADDED:
            indexes.sort(key=self.sort_key(order))
        if photo_filter.show is Show.NEAR_DUPLICATES:
            # Group by group (in the order of each group's first photo), each in the sort order.
            grouped, ids = self.near_duplicate_group, self.ids
            indexes.sort(key=lambda i: grouped[ids[i]])
        return indexes
