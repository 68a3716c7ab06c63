"""Near-duplicates: photos whose perceptual hashes lie a few bits apart (tagger.images.perceptual).

At import each new photo is compared with every photo the library has, vectorised: a XOR and a
popcount over one int64 array, some 100,000 of them in well under a millisecond, so importing
into a big library stays linear. A photo found close to an earlier one records that photo's id
(photos.near_duplicate_of); the groups shown to the user are those links joined up."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tagger.images.perceptual import NEAR_DUPLICATE_BITS, distances


class HashIndex:
    """Every known photo's perceptual hash, in memory, growing as photos are added."""

    def __init__(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        self._ids = np.asarray(ids, dtype=np.int64)
        self._hashes = np.asarray(hashes, dtype=np.int64)
        self._count = len(self._ids)

    def __len__(self) -> int:
        return self._count

    def closest(self, perceptual_hash: int, *, within: int = NEAR_DUPLICATE_BITS) -> int | None:
        """The id of the known photo nearest to `perceptual_hash` if it is `within` bits; the
        earliest of equally near ones."""
        if not self._count:
            return None
        apart = distances(self._hashes[: self._count], perceptual_hash)
        nearest = int(apart.min())
        if nearest > within:
            return None
        candidates = self._ids[: self._count][apart == nearest]
        return int(candidates.min())

    def update(self, photo_id: int, perceptual_hash: int | None) -> None:
        """A known photo's file changed: its new hash (None: none any more), or added if unknown."""
        where = np.flatnonzero(self._ids[: self._count] == photo_id)
        if perceptual_hash is None:
            if len(where):
                keep = np.ones(self._count, dtype=bool)
                keep[where] = False
                self._ids, self._hashes = self._ids[: self._count][keep], self._hashes[: self._count][keep]
                self._count = len(self._ids)
        elif len(where):
            self._hashes[where] = perceptual_hash
        else:
            self.add(photo_id, perceptual_hash)

    def add(self, photo_id: int, perceptual_hash: int) -> None:
        if self._count == len(self._ids):
            # Doubling: a long import appends in amortised constant time.
            capacity = max(64, 2 * len(self._ids))
            self._ids = np.resize(self._ids, capacity)
            self._hashes = np.resize(self._hashes, capacity)
        self._ids[self._count] = photo_id
        self._hashes[self._count] = perceptual_hash
        self._count += 1


def groups_from_links(links: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Groups of photo ids joined by (photo, earlier photo) links: each group in id order, the
    groups in the order of their first photo."""
    parent: dict[int, int] = {}

    def root(photo_id: int) -> int:
        parent.setdefault(photo_id, photo_id)
        while parent[photo_id] != photo_id:
            parent[photo_id] = parent[parent[photo_id]]
            photo_id = parent[photo_id]
        return photo_id

    for photo_id, earlier_id in links:
        first, second = root(photo_id), root(earlier_id)
        if first != second:
            parent[max(first, second)] = min(first, second)
    members: dict[int, list[int]] = {}
    for photo_id in parent:
        members.setdefault(root(photo_id), []).append(photo_id)
    return sorted((sorted(group) for group in members.values() if len(group) > 1), key=lambda group: group[0])
