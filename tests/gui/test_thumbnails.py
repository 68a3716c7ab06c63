"""Thumbnails: made in the background, cached on disk by content hash, bounded in memory, on demand."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QPixmap

from tagger.domain import ImportSummary, ScannedFile
from tagger.gui.jobs.workers import JobRunner
from tagger.gui.photos.thumbnails import (
    PixmapCache,
    RequestQueue,
    ThumbnailProvider,
    ThumbnailRequest,
    cached_file,
    disk_size_for,
    make_thumbnail,
)


def request(number: int, size: int = 128) -> ThumbnailRequest:
    return ThumbnailRequest(number, f"/p/{number}.jpg", f"{number:064x}", size)


def test_the_newest_requests_go_first_and_old_ones_are_dropped():
    queue = RequestQueue(limit=3)
    dropped = []
    for number in range(5):
        dropped += queue.put(request(number))
    assert [r.photo_id for r in dropped] == [0, 1]
    assert [queue.take(0).photo_id for _ in range(3)] == [4, 3, 2]
    assert queue.take(0) is None


def test_memory_cache_is_bounded_by_bytes(qapp):
    cache = PixmapCache(budget_bytes=3 * 100 * 100 * 4)
    for number in range(5):
        cache.put((str(number), 100), QPixmap(100, 100))
    assert len(cache) == 3
    assert cache.get(("0", 100)) is None and cache.get(("4", 100)) is not None


def test_thumbnails_are_cached_on_disk_by_content_hash(qapp, make_photos, tmp_path):
    photo = make_photos("t", count=1, size=(1000, 500))[0]
    wanted = ThumbnailRequest(1, str(photo), "ab" * 32, 200)
    image = make_thumbnail(wanted, tmp_path / "cache")
    assert (image.width(), image.height()) == (200, 100)
    cached = cached_file(tmp_path / "cache", "ab" * 32, disk_size_for(200))
    assert cached.exists()
    photo.unlink()  # served from the disk cache from now on
    again = make_thumbnail(wanted, tmp_path / "cache")
    assert (again.width(), again.height()) == (200, 100)


def test_placeholder_first_then_the_thumbnail(qtbot, make_photos, tmp_path):
    photo = make_photos("t", count=1)[0]
    runner = JobRunner()
    provider = ThumbnailProvider(tmp_path / "cache", runner, workers=1)
    assert provider.pixmap(7, str(photo), "cd" * 32, 96) is None
    with qtbot.waitSignal(provider.thumbnail_ready, timeout=5000) as ready:
        pass
    assert ready.args == [7]
    assert provider.pixmap(7, str(photo), "cd" * 32, 96) is not None
    missing = provider.pixmap(8, str(tmp_path / "gone.jpg"), "ef" * 32, 96)
    assert missing is None
    with qtbot.waitSignal(provider.thumbnail_failed, timeout=5000) as failed:
        pass
    assert failed.args[0] == 8 and provider.failure("ef" * 32)
    provider.stop()
    assert runner.shutdown(timeout_ms=5000)


def test_only_tiles_on_screen_are_requested(qtbot, window_factory, library):
    library.record_scanned(
        [ScannedFile(f"/nowhere/{n:05d}.jpg", 1, 1.0, f"{n:064x}", 10, 10, "JPEG") for n in range(3000)],
        ImportSummary(),
    )
    window = window_factory(library)
    requested: set[int] = set()
    original = window.thumbnails.pixmap

    def recording(photo_id, path, content_hash, size):  # noqa: ANN001, ANN202
        requested.add(photo_id)
        return original(photo_id, path, content_hash, size)

    window.thumbnails.pixmap = recording
    gallery = window.gallery
    qtbot.waitUntil(lambda: gallery.indexAt(QPoint(20, 20)).isValid())  # laid out
    gallery.viewport().grab()  # paints the grid now
    columns = max(1, gallery.viewport().width() // gallery.gridSize().width() + 1)
    rows = gallery.viewport().height() // gallery.gridSize().height() + 2
    assert 0 < len(requested) <= columns * rows
