"""The gallery's view of the library: which photos it shows, in which order, and what it paints of them.

The library chooses the photos to show in SQL (Library.gallery_ids) and hands back their ids as
one numpy array, so opening a library of a million photos makes no Python object per photo. The
columns the tiles paint (name, label, thumbnail key...) are read for the photos on screen only,
a block of rows at a time, and the most recent blocks are kept. No Qt here: the item model in
model.py adapts this to the view.
"""

from __future__ import annotations

import enum
import itertools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tagger.domain import PhotoFilter, Show, SortOrder, SourceFilter
from tagger.library.library import Library

__all__ = ["LabelOrigin", "PhotoFilter", "PhotoTable", "Show", "ShownPhoto", "SortOrder", "SourceFilter"]

NO_LABEL = -1
# Rows read from the library together when the view first asks for one of them: about a
# screenful of tiles, read in one query.
BLOCK_ROWS = 256
# Photos whose columns are kept: a few screens' worth around what is shown.
KEPT_PHOTOS = 16 * BLOCK_ROWS


class LabelOrigin(enum.IntEnum):
    NONE = 0
    MODEL = 1
    USER = 2


_SOURCE_CODES = {None: LabelOrigin.NONE, "model": LabelOrigin.MODEL, "user": LabelOrigin.USER}


@dataclass(frozen=True, slots=True)
class ShownPhoto:
    """What a tile shows of one photo."""

    id: int
    path: str
    name: str
    content_hash: str | None
    label: int  # position in PhotoTable.class_names, or NO_LABEL
    origin: LabelOrigin
    confidence: float | None
    readable: bool
    missing: bool
    date: float  # when taken, or else the file's modification time
    error: str | None


class PhotoTable:
    """The photos of one library as the gallery sees them: counts, selections and the columns of
    photos recently shown. Photo ids are the keys throughout."""

    def __init__(self) -> None:
        self.class_names: list[str] = []
        self._class_position: dict[int, int] = {}
        self._library: Library | None = None
        self._total = 0
        # Photos with an id above this one are new to the table (SQLite gives new rows higher ids).
        self._newest_id = 0
        self._photos: dict[int, ShownPhoto] = {}  # recently read, oldest first
        # Per class: (labeled, of which confirmed); read when first asked for after a change.
        self._counts: dict[str, tuple[int, int]] | None = None
        # Photo id -> the first photo id of its near-duplicate group (photos in no group are absent);
        # read when first asked for (the Near-duplicates filter), not at first paint.
        self._near_duplicate_group: dict[int, int] | None = None

    def __len__(self) -> int:
        return self._total

    # -- loading -----------------------------------------------------------------

    def load(self, library: Library) -> None:
        self._library = library
        self._load_classes(library)
        self._total = library.photo_count()
        self._newest_id = library.newest_photo_id()
        self._photos.clear()
        self._counts = None
        self._near_duplicate_group = None

    def reload_classes(self, library: Library) -> None:
        """Class list changed (added or renamed): labels must be re-read to keep positions right."""
        self._load_classes(library)

    def _load_classes(self, library: Library) -> None:
        classes = library.classes()
        self.class_names = [c.name for c in classes]
        self._class_position = {c.id: position for position, c in enumerate(classes)}

    def add(self, library: Library, photo_ids: Iterable[int]) -> list[int]:
        """Photos new to the library (from an import): returns those the table did not know, in id order."""
        new_ids = sorted({int(i) for i in photo_ids if i > self._newest_id})
        if not new_ids:
            return []
        self._newest_id = new_ids[-1]
        self._total += len(new_ids)
        self.read(library, new_ids)
        if self._counts is not None:
            for photo_id in new_ids:
                photo = self._photos.get(photo_id)
                if photo is not None and photo.label != NO_LABEL:
                    labeled, confirmed = self._counts[self.class_names[photo.label]]
                    self._counts[self.class_names[photo.label]] = (
                        labeled + 1,
                        confirmed + (photo.origin == LabelOrigin.USER),
                    )
        # An import flags each new near-duplicate with one earlier photo: its group grows by it.
        group = self._near_duplicate_group
        if group is not None:
            for photo_id, earlier_id in library.near_duplicate_links(new_ids):
                group[photo_id] = group.setdefault(earlier_id, earlier_id)
        return new_ids

    def refresh(self, library: Library, photo_ids: Iterable[int]) -> list[int]:
        """Photos whose label or file changed: read again those kept; returns the ids given."""
        changed = list(dict.fromkeys(int(i) for i in photo_ids))
        kept = [photo_id for photo_id in changed if photo_id in self._photos]
        for photo_id in kept:
            del self._photos[photo_id]
        self.read(library, kept)
        self._counts = None
        return changed

    def read(self, library: Library, photo_ids: Sequence[int]) -> None:
        """Read and keep the columns of these photos (those not kept already)."""
        wanted = [photo_id for photo_id in photo_ids if photo_id not in self._photos]
        if not wanted:
            return
        position = self._class_position.get
        for row in library.gallery_rows(wanted):
            (photo_id, path, content_hash, class_id, source, confidence, readable, missing, date, error) = row
            self._photos[photo_id] = ShownPhoto(
                id=photo_id,
                path=path,
                name=os.path.basename(path),
                content_hash=content_hash,
                label=NO_LABEL if class_id is None else position(class_id, NO_LABEL),
                origin=_SOURCE_CODES.get(source, LabelOrigin.NONE),
                confidence=confidence,
                readable=bool(readable),
                missing=bool(missing),
                date=date or 0.0,
                error=error,
            )
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        excess = len(self._photos) - KEPT_PHOTOS
        if excess > 0:
            for photo_id in list(itertools.islice(self._photos, excess)):
                del self._photos[photo_id]

    # -- reading -----------------------------------------------------------------

    def photo(self, photo_id: int) -> ShownPhoto | None:
        """The photo's columns if they were read and are still kept."""
        return self._photos.get(photo_id)

    def label_name(self, photo: ShownPhoto) -> str | None:
        return None if photo.label == NO_LABEL else self.class_names[photo.label]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per class: (photos labeled in total, of which the user confirmed)."""
        if self._counts is None:
            self._counts = self._library.label_counts() if self._library is not None else {}
        totals = {name: self._counts.get(name, (0, 0))[0] for name in self.class_names}
        confirmed = {name: self._counts.get(name, (0, 0))[1] for name in self.class_names}
        return totals, confirmed

    def has_near_duplicate(self, photo_id: int) -> bool:
        if self._near_duplicate_group is not None:
            return photo_id in self._near_duplicate_group
        return self._library is not None and self._library.has_near_duplicate(photo_id)

    @property
    def near_duplicate_group(self) -> dict[int, int]:
        if self._near_duplicate_group is None:
            groups = self._library.near_duplicate_id_groups() if self._library is not None else []
            self._near_duplicate_group = {photo_id: group[0] for group in groups for photo_id in group}
        return self._near_duplicate_group

    # -- selecting -------------------------------------------------------------

    def matching(self, photo_filter: PhotoFilter, photo_ids: Sequence[int]) -> list[int]:
        """Those of `photo_ids` that pass the filter, in id order."""
        if self._library is None or not photo_ids:
            return []
        return self._library.gallery_matching(photo_filter, photo_ids)

    def sort_key(self, order: SortOrder) -> Callable[[int], object]:
        """The sort order as a key over photo ids, the one Library.gallery_ids sorts by."""
        if order is SortOrder.ADDED:
            return int
        column = self._sort_columns

        if order is SortOrder.NAME:
            return lambda photo_id: (column(photo_id).name.casefold(), int(photo_id))
        if order is SortOrder.DATE:
            return lambda photo_id: (column(photo_id).date, int(photo_id))
        if order is SortOrder.FOLDER:
            return lambda photo_id: (
                os.path.dirname(column(photo_id).path).casefold(),
                column(photo_id).name.casefold(),
                int(photo_id),
            )

        def least_confident_first(photo_id: int) -> tuple[int, float, int]:
            # Guesses first, weakest on top; then photos with no label; confirmed ones last.
            photo = column(photo_id)
            if photo.origin == LabelOrigin.USER:
                return (2, 0.0, int(photo_id))
            if photo.confidence is None or math.isnan(photo.confidence):
                return (1, 0.0, int(photo_id))
            return (0, photo.confidence, int(photo_id))

        return least_confident_first

    def _sort_columns(self, photo_id: int) -> ShownPhoto:
        photo_id = int(photo_id)
        photo = self._photos.get(photo_id)
        if photo is None and self._library is not None:
            self.read(self._library, [photo_id])
            photo = self._photos.get(photo_id)
        return photo or _GONE

    def select_listed(self, photo_filter: PhotoFilter, photo_ids: Sequence[int]) -> np.ndarray:
        """Ids of the listed photos that pass the filter, in the list's order."""
        passing = set(self.matching(photo_filter, list(dict.fromkeys(photo_ids))))
        return np.array([photo_id for photo_id in photo_ids if photo_id in passing], dtype=np.int64)

    def select(self, photo_filter: PhotoFilter, order: SortOrder) -> np.ndarray:
        """Ids of the photos to show, in display order."""
        if self._library is None:
            return np.zeros(0, dtype=np.int64)
        ids = self._library.gallery_ids(photo_filter, order)
        if photo_filter.show is Show.NEAR_DUPLICATES and len(ids):
            # Group by group (in the order of each group's first photo), each in the sort order.
            grouped = self.near_duplicate_group
            firsts = np.fromiter((grouped.get(int(i), int(i)) for i in ids), dtype=np.int64, count=len(ids))
            ids = ids[np.argsort(firsts, kind="stable")]
        return ids


# What a sort key sees of a photo removed from the library while shown (until the next reload).
_GONE = ShownPhoto(0, "", "", None, NO_LABEL, LabelOrigin.NONE, None, False, False, math.inf, None)
