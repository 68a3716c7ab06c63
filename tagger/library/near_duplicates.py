"""Near-duplicates: photos whose perceptual hashes lie a few bits apart (tagger.images.perceptual).

At import each new photo is compared with the photos the library has. Comparing it with every
one would make an import's cost grow with the square of the library's size, so the hashes are
indexed by their four 16-bit quarters: two hashes within NEAR_DUPLICATE_BITS of each other
differ in at most that many bits in all, hence in at most one bit in some quarter (four quarters
of two bits each would be more). The photos whose quarter equals the new photo's, or is one bit
away from it, in some quarter, are therefore all the candidates there are; their exact distances
then decide. A photo found close to an earlier one records that photo's id
(photos.near_duplicate_of); the groups shown to the user are those links joined up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from tagger.images.perceptual import NEAR_DUPLICATE_BITS, distances

QUARTERS = 4
QUARTER_BITS = 16
_QUARTER_MASK = (1 << QUARTER_BITS) - 1
# Photos added since the index was last sorted are looked through one by one, up to this many;
# then they are merged into the sorted part.
_PENDING_LIMIT = 16384


def quarter_probes(perceptual_hash: int) -> list[np.ndarray]:
    """For each quarter of the hash: its value, then the values one bit away from it."""
    unsigned = perceptual_hash & ((1 << 64) - 1)
    probes = []
    for quarter in range(QUARTERS):
        value = (unsigned >> (quarter * QUARTER_BITS)) & _QUARTER_MASK
        probes.append(np.array([value, *(value ^ (1 << bit) for bit in range(QUARTER_BITS))], dtype=np.int64))
    return probes


def nearest(
    ids: np.ndarray, hashes: np.ndarray, perceptual_hash: int, *, within: int = NEAR_DUPLICATE_BITS
) -> int | None:
    """Of the photos `ids` with `hashes`, the id of the one nearest to `perceptual_hash` if it is
    `within` bits; the earliest of equally near ones."""
    if not len(ids):
        return None
    apart = distances(hashes, perceptual_hash)
    closest = int(apart.min())
    if closest > within:
        return None
    return int(np.asarray(ids)[apart == closest].min())


class _QuarterBuckets:
    """The hashes grouped by the value of one of their quarters, a bucket per value, each hash
    with its position in the index; a bucket's hashes lie side by side, so reading one is quick."""

    def __init__(self, quarter: int) -> None:
        self._shift = np.uint64(quarter * QUARTER_BITS)
        self._hashes = np.zeros(0, dtype=np.int64)
        self._positions = np.zeros(0, dtype=np.int32)
        # The bucket of value v is _hashes[_starts[v] : _starts[v + 1]] (and the same of _positions).
        self._starts = np.zeros((1 << QUARTER_BITS) + 1, dtype=np.int64)

    def add(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        values = ((hashes.view(np.uint64) >> self._shift) & np.uint64(_QUARTER_MASK)).astype(np.int64)
        order = np.argsort(values, kind="stable")
        at = self._starts[values[order] + 1]
        self._hashes = np.insert(self._hashes, at, hashes[order])
        self._positions = np.insert(self._positions, at, positions[order])
        self._starts[1:] += np.cumsum(np.bincount(values, minlength=1 << QUARTER_BITS))

    def find(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hashes in the buckets of these values, and their positions, all together."""
        starts = self._starts[values]
        lengths = self._starts[values + 1] - starts
        # Each bucket's entries one after the other, picked out by one fancy index.
        picked = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        return self._hashes[picked], self._positions[picked]


class HashIndex:
    """The perceptual hashes of a library's present photos, in memory: sorted by value, and put
    in buckets by each of their quarters, so that a lookup reads only its candidates."""

    def __init__(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._hashes = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._sorted_hashes = np.zeros(0, dtype=np.int64)
        self._sorted_positions = np.zeros(0, dtype=np.int32)
        self._buckets = [_QuarterBuckets(quarter) for quarter in range(QUARTERS)]
        # Photos added since the last merge: looked through one by one.
        self._pending_ids = np.zeros(_PENDING_LIMIT, dtype=np.int64)
        self._pending_hashes = np.zeros(_PENDING_LIMIT, dtype=np.int64)
        self._pending = 0
        self._merge(np.asarray(ids, dtype=np.int64), np.asarray(hashes, dtype=np.int64))

    def __len__(self) -> int:
        return int(self._alive.sum()) + self._pending

    def closest(self, perceptual_hash: int, *, within: int = NEAR_DUPLICATE_BITS) -> int | None:
        """The id of the known photo nearest to `perceptual_hash` if it is `within` bits; the
        earliest of equally near ones."""
        # The same hash is as near as can be; looked up first, as copies of one picture may be many.
        same = self._earliest_with(perceptual_hash)
        if same is not None:
            return same
        found = [buckets.find(probe) for buckets, probe in zip(self._buckets, quarter_probes(perceptual_hash))]
        hashes = np.concatenate([hashes for hashes, _positions in found])
        positions = np.concatenate([positions for _hashes, positions in found])
        # Only the few within reach are looked up further (their ids lie all over memory).
        close = distances(hashes, perceptual_hash) <= within
        hashes, positions = hashes[close], positions[close]
        alive = self._alive[positions]
        pending = slice(0, self._pending)
        return nearest(
            np.concatenate([self._ids[positions[alive]], self._pending_ids[pending]]),
            np.concatenate([hashes[alive], self._pending_hashes[pending]]),
            perceptual_hash,
            within=within,
        )

    def _earliest_with(self, perceptual_hash: int) -> int | None:
        sorted_hashes = self._sorted_hashes
        first = sorted_hashes.searchsorted(perceptual_hash, "left")
        last = sorted_hashes.searchsorted(perceptual_hash, "right") if first < len(sorted_hashes) else first
        same = self._sorted_positions[first:last]
        pending_hashes = self._pending_hashes[: self._pending]
        ids = np.concatenate(
            [self._ids[same[self._alive[same]]], self._pending_ids[: self._pending][pending_hashes == perceptual_hash]]
        )
        return int(ids.min()) if len(ids) else None

    def add(self, photo_id: int, perceptual_hash: int) -> None:
        self._pending_ids[self._pending] = photo_id
        self._pending_hashes[self._pending] = perceptual_hash
        self._pending += 1
        if self._pending == _PENDING_LIMIT:
            self._merge(self._pending_ids.copy(), self._pending_hashes.copy())
            self._pending = 0

    def update(self, photo_id: int, perceptual_hash: int | None) -> None:
        """A known photo's file changed: its new hash (None: none any more), or added if unknown."""
        self.remove([photo_id])
        if perceptual_hash is not None:
            self.add(photo_id, perceptual_hash)

    def remove(self, photo_ids: Sequence[int]) -> None:
        """Photos removed from the library or gone missing: no one's near-duplicate any more."""
        gone = np.asarray(photo_ids, dtype=np.int64)
        self._alive &= ~np.isin(self._ids, gone)
        keep = ~np.isin(self._pending_ids[: self._pending], gone)
        kept = int(keep.sum())
        self._pending_ids[:kept] = self._pending_ids[: self._pending][keep]
        self._pending_hashes[:kept] = self._pending_hashes[: self._pending][keep]
        self._pending = kept

    def _merge(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """Add photos to the sorted part, merged in: a cost that grows with the library, not its square."""
        positions = np.arange(len(self._ids), len(self._ids) + len(ids), dtype=np.int32)
        self._ids = np.concatenate([self._ids, ids])
        self._hashes = np.concatenate([self._hashes, hashes])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        order = np.argsort(hashes)
        at = np.searchsorted(self._sorted_hashes, hashes[order])
        self._sorted_hashes = np.insert(self._sorted_hashes, at, hashes[order])
        self._sorted_positions = np.insert(self._sorted_positions, at, positions[order])
        for buckets in self._buckets:
            buckets.add(hashes, positions)


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
