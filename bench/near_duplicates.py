"""What finding near-duplicates costs an import: the perceptual hash per 12 MP photo, and the
comparison with every photo of a 100,000-photo library.

  before_ms        scanning one camera photo as the importer did before: SHA-256 of the file,
                   header probe and completeness check (one thread, median over the photos)
  dhash_ms         the dHash as the importer takes it (tagger.images.perceptual: the JPEG
                   decoded at 1/8 scale by DCT scaling, then 128 px, then 9 x 8 grey)
  dhash_full_ms    the same hash from a full-size decode, for comparison
  import_ratio     the real importer (`import_paths`, its thread pool) over the photos with the
                   hash against without it, same run, alternating rounds: wall time and CPU time
  compare_us       one new photo against 100,000 stored hashes (tagger.library.near_duplicates:
                   the candidates sharing a quarter of the hash, or nearly, then XOR + popcount)
  hashes_ms        reading the perceptual hashes of 100,000 photos and indexing them (done once
                   per session, by the first import's worker); the grid's read of the photos'
                   ids in its order (Library.gallery_ids) for scale

Run: `.venv/bin/python -m bench.near_duplicates [--photos 40] [--rounds 3]`. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

from bench.common import camera_photos, emit_json
from tagger.domain import PhotoFilter, SortOrder
from tagger.images import loader
from tagger.images.perceptual import difference_hash, hash_of_picture
from tagger.library import importer
from tagger.library.importer import import_paths
from tagger.library.library import Library
from tagger.library.near_duplicates import HashIndex

LIBRARY_SIZE = 100_000


def _median_ms(photos: list[Path], work) -> float:
    times = []
    for photo in photos:
        started = time.perf_counter()
        work(photo)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _scan_before(photo: Path) -> None:
    importer._hash_file(str(photo))
    info = loader.probe(photo)
    loader.check_complete(photo, info.format)


def _full_decode_hash(photo: Path) -> int:
    with Image.open(photo) as picture:
        return hash_of_picture(picture.convert("RGB").resize((128, 96), Image.Resampling.BICUBIC))


def _import_once(photos: list[Path], *, with_hash: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="tagger-bench-") as folder, Library(Path(folder) / "library") as library:
        patch = mock.patch.object(importer, "_perceptual_hash", lambda _path: None) if not with_hash else None
        if patch:
            patch.start()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = import_paths(library, photos)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            if patch:
                patch.stop()
        assert len(summary.added) == len(photos), summary.describe()
    return wall, cpu


def _comparison_figures() -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    hashes = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=LIBRARY_SIZE, dtype=np.int64)
    index = HashIndex(np.arange(1, LIBRARY_SIZE + 1), hashes)
    probes = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=500, dtype=np.int64)
    started = time.perf_counter()
    for probe in probes:
        index.closest(int(probe))
    compare_us = 1e6 * (time.perf_counter() - started) / len(probes)
    with tempfile.TemporaryDirectory(prefix="tagger-bench-") as folder, Library(Path(folder) / "library") as library:
        with library.store.transaction(durable=False):
            for number, value in enumerate(hashes):
                library.store.insert_photo(
                    f"/photos/{number}.jpg",
                    content_hash=f"{number:064x}",
                    size_bytes=1,
                    mtime=0.0,
                    width=1,
                    height=1,
                    format="JPEG",
                    readable=True,
                    error=None,
                    perceptual_hash=int(value),
                )
        # What the first import of a session reads (in its worker): the hashes, indexed; against
        # the grid's read of the photos' ids for scale.
        started = time.perf_counter()
        ids = library.gallery_ids(PhotoFilter(), SortOrder.ADDED)
        ids_ms = 1000 * (time.perf_counter() - started)
        started = time.perf_counter()
        index = library.read_perceptual_hashes()
        load_ms = 1000 * (time.perf_counter() - started)
        assert len(ids) == len(index) == LIBRARY_SIZE
    return compare_us, load_ms, ids_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40, help="12 MP camera photos to import (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="importer rounds, each with and without (default 3)")
    args = parser.parse_args()
    photos = camera_photos(args.photos)
    for photo in photos[:2]:  # warm the page cache and Pillow
        _scan_before(photo)
        difference_hash(photo)

    before_ms = _median_ms(photos, _scan_before)
    dhash_ms = _median_ms(photos, difference_hash)
    full_ms = _median_ms(photos[: max(4, len(photos) // 4)], _full_decode_hash)
    print(f"one 12 MP photo, one thread (median of {len(photos)}):")
    print(f"  scan before (SHA-256, probe, completeness): {before_ms:6.1f} ms")
    print(f"  dHash, JPEG decoded at 1/8 scale:           {dhash_ms:6.1f} ms = {dhash_ms / before_ms:.1f}x the scan")
    print(f"  dHash from a full decode:                   {full_ms:6.1f} ms = {full_ms / before_ms:.1f}x the scan")

    walls = {False: [], True: []}
    cpus = {False: [], True: []}
    for _round in range(args.rounds):
        for with_hash in (False, True):
            wall, cpu = _import_once(photos, with_hash=with_hash)
            walls[with_hash].append(wall)
            cpus[with_hash].append(cpu)
    wall_before, wall_after = statistics.median(walls[False]), statistics.median(walls[True])
    cpu_before, cpu_after = statistics.median(cpus[False]), statistics.median(cpus[True])
    per_photo = 1000 / len(photos)
    print(f"the importer over {len(photos)} photos (median of {args.rounds} rounds each, alternating):")
    print(
        f"  wall per photo: {wall_before * per_photo:5.1f} ms before, {wall_after * per_photo:5.1f} ms with the hash "
        f"= {wall_after / wall_before:.2f}x"
    )
    print(
        f"  CPU per photo:  {cpu_before * per_photo:5.1f} ms before, {cpu_after * per_photo:5.1f} ms with the hash "
        f"= {cpu_after / cpu_before:.2f}x"
    )

    compare_us, load_ms, ids_ms = _comparison_figures()
    print(f"one photo against {LIBRARY_SIZE:,} stored hashes: {compare_us:.0f} us")
    print(
        f"the perceptual hashes of {LIBRARY_SIZE:,} photos read and indexed: {load_ms:.0f} ms "
        f"(the grid's read of their ids: {ids_ms:.0f} ms)"
    )
    emit_json(
        "near_duplicates",
        {
            "photos": len(photos),
            "before_ms": round(before_ms, 2),
            "dhash_ms": round(dhash_ms, 2),
            "dhash_full_ms": round(full_ms, 2),
            "dhash_vs_before": round(dhash_ms / before_ms, 2),
            "import_wall_ms_before": round(wall_before * per_photo, 2),
            "import_wall_ms_after": round(wall_after * per_photo, 2),
            "import_wall_ratio": round(wall_after / wall_before, 2),
            "import_cpu_ms_before": round(cpu_before * per_photo, 2),
            "import_cpu_ms_after": round(cpu_after * per_photo, 2),
            "import_cpu_ratio": round(cpu_after / cpu_before, 2),
            "compare_100k_us": round(compare_us, 1),
            "hashes_100k_ms": round(load_ms, 1),
            "gallery_ids_100k_ms": round(ids_ms, 1),
        },
    )


if __name__ == "__main__":
    main()
