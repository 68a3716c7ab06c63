"""Thumbnails: decoded off the GUI thread, kept on disk by content hash, and in memory for what is on screen.

The gallery asks only for the tiles it paints, so scrolling through 100,000
photos decodes just the rows that come into view. Workers produce QImages
(safe outside the GUI thread); the GUI thread alone turns them into QPixmaps.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from tagger.gui.jobs.workers import Job, JobContext, JobRunner

log = logging.getLogger(__name__)

# Sizes kept on disk: a request is served from the smallest one at least as big,
# so changing the tile size or moving to a HiDPI screen rarely decodes again.
DISK_SIZES: tuple[int, ...] = (128, 256, 384, 512, 768)
_MAX_QUEUED = 256
_JPEG_QUALITY = 88


@dataclass(frozen=True)
class ThumbnailRequest:
    photo_id: int
    path: str
    content_hash: str
    pixel_size: int  # the longest side wanted, in device pixels

    @property
    def key(self) -> tuple[str, int]:
        return (self.content_hash, self.pixel_size)


@dataclass(frozen=True)
class ThumbnailOutcome:
    request: ThumbnailRequest
    image: QImage | None
    error: str | None = None


def disk_size_for(pixel_size: int) -> int:
    for size in DISK_SIZES:
        if size >= pixel_size:
            return size
    return DISK_SIZES[-1]


def cached_file(cache_dir: Path, content_hash: str, disk_size: int) -> Path:
    # Two-letter fan-out keeps any one folder small enough for every file system.
    return cache_dir / content_hash[:2] / f"{content_hash}-{disk_size}.jpg"


def make_thumbnail(request: ThumbnailRequest, cache_dir: Path) -> QImage:
    """The thumbnail as a QImage, from the disk cache or by decoding the photo (worker thread)."""
    disk_size = disk_size_for(request.pixel_size)
    file = cached_file(cache_dir, request.content_hash, disk_size)
    image = QImage(str(file)) if file.exists() else QImage()
    if image.isNull():
        image = _decode_and_cache(request.path, file, disk_size)
    longest = max(image.width(), image.height())
    if longest > request.pixel_size:
        image = image.scaled(
            QSize(request.pixel_size, request.pixel_size),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return image


def _decode_and_cache(photo_path: str, file: Path, disk_size: int) -> QImage:
    # Imported here so the window can paint before Pillow and its plug-ins load.
    from PIL import Image

    from tagger.images.loader import load_rgb

    picture = load_rgb(photo_path, max_side=disk_size)
    if max(picture.size) > disk_size:
        picture.thumbnail((disk_size, disk_size), Image.Resampling.LANCZOS)
    _write_quietly(picture, file)
    data = picture.tobytes("raw", "RGB")
    width, height = picture.size
    # copy(): the QImage must own its pixels once `data` goes away.
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def _write_quietly(picture: object, file: Path) -> None:
    """Save to the disk cache; a full disk or read-only library only costs a decode next time."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".thumb-", suffix=".jpg", dir=file.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                picture.save(stream, "JPEG", quality=_JPEG_QUALITY)  # type: ignore[attr-defined]
            # Rename last so another reader never sees half a file.
            os.replace(temp_name, file)
        except BaseException:
            os.unlink(temp_name)
            raise
    except OSError as error:
        log.warning("Cannot cache thumbnail %s: %s", file, error)


class RequestQueue:
    """Newest requests first, at most `limit` waiting: the tiles on screen now beat those scrolled past."""

    def __init__(self, limit: int = _MAX_QUEUED) -> None:
        self._items: deque[ThumbnailRequest] = deque()
        self._limit = limit
        self._ready = threading.Condition()

    def put(self, request: ThumbnailRequest) -> list[ThumbnailRequest]:
        """Queue a request; returns the oldest ones it pushed out."""
        dropped: list[ThumbnailRequest] = []
        with self._ready:
            self._items.append(request)
            while len(self._items) > self._limit:
                dropped.append(self._items.popleft())
            self._ready.notify()
        return dropped

    def take(self, timeout_s: float) -> ThumbnailRequest | None:
        with self._ready:
            if not self._items:
                self._ready.wait(timeout_s)
            return self._items.pop() if self._items else None

    def drain(self) -> list[ThumbnailRequest]:
        with self._ready:
            items = list(self._items)
            self._items.clear()
            return items


def _thumbnail_work(queue: RequestQueue, cache_dir: Path):
    def work(context: JobContext) -> Iterator[ThumbnailOutcome]:
        while not context.cancelled():
            request = queue.take(timeout_s=0.1)
            if request is None:
                continue
            try:
                yield ThumbnailOutcome(request, make_thumbnail(request, cache_dir))
            except Exception as error:  # noqa: BLE001 - one bad photo must not stop the others
                yield ThumbnailOutcome(request, None, str(error) or type(error).__name__)

    return work


class PixmapCache:
    """Least recently used pixmaps, bounded by the bytes they hold."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._used = 0
        self._items: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()

    def get(self, key: tuple[str, int]) -> QPixmap | None:
        pixmap = self._items.get(key)
        if pixmap is not None:
            self._items.move_to_end(key)
        return pixmap

    def put(self, key: tuple[str, int], pixmap: QPixmap) -> None:
        if key in self._items:
            self._used -= _bytes_of(self._items.pop(key))
        self._items[key] = pixmap
        self._used += _bytes_of(pixmap)
        while self._used > self._budget and len(self._items) > 1:
            _old_key, old = self._items.popitem(last=False)
            self._used -= _bytes_of(old)

    def clear(self) -> None:
        self._items.clear()
        self._used = 0

    def __len__(self) -> int:
        return len(self._items)


def _bytes_of(pixmap: QPixmap) -> int:
    return pixmap.width() * pixmap.height() * 4


class ThumbnailProvider(QObject):
    """What the gallery asks for a tile's picture; answers at once with a pixmap or None (for now)."""

    thumbnail_ready = Signal(int)  # photo id whose thumbnail can now be painted
    thumbnail_failed = Signal(int, str)  # photo id, reason

    def __init__(
        self,
        cache_dir: Path,
        jobs: JobRunner,
        *,
        workers: int = 2,
        memory_budget_bytes: int = 192 * 2**20,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._cache_dir = Path(cache_dir)
        self._jobs = jobs
        self._worker_count = max(1, workers)
        self._workers: list[Job] = []
        self._queue = RequestQueue()
        self._memory = PixmapCache(memory_budget_bytes)
        self._pending: set[tuple[str, int]] = set()
        self._waiting_photos: dict[tuple[str, int], set[int]] = {}
        self._failures: dict[str, str] = {}  # content hash -> reason
        self._largest_in_memory: dict[str, int] = {}  # content hash -> biggest pixel size delivered
        self._stopped = False

    def pixmap(self, photo_id: int, path: str, content_hash: str | None, pixel_size: int) -> QPixmap | None:
        """The thumbnail if ready; otherwise None, and it is requested (once) in the background."""
        if not content_hash or content_hash in self._failures:
            return None
        key = (content_hash, pixel_size)
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        self._waiting_photos.setdefault(key, set()).add(photo_id)
        if key not in self._pending and not self._stopped:
            self._pending.add(key)
            self._ensure_workers()
            for dropped in self._queue.put(ThumbnailRequest(photo_id, path, content_hash, pixel_size)):
                self._pending.discard(dropped.key)
                self._waiting_photos.pop(dropped.key, None)
        return None

    def any_cached(self, content_hash: str | None) -> QPixmap | None:
        """The biggest thumbnail in memory for a photo, whatever its size (a stand-in for a preview)."""
        size = self._largest_in_memory.get(content_hash or "")
        return None if size is None else self._memory.get((content_hash, size))

    def failure(self, content_hash: str | None) -> str | None:
        return self._failures.get(content_hash) if content_hash else None

    def forget_memory(self) -> None:
        """Drop pixmaps held in memory, e.g. after the tile size changed."""
        self._memory.clear()
        self._largest_in_memory.clear()

    def stop(self) -> None:
        """Stop the workers; requests still queued are dropped."""
        self._stopped = True
        self._queue.drain()
        for job in self._workers:
            job.cancel()

    def _ensure_workers(self) -> None:
        self._workers = [job for job in self._workers if job.is_running()]
        while len(self._workers) < self._worker_count:
            job = self._jobs.start("thumbnails", _thumbnail_work(self._queue, self._cache_dir))
            job.result.connect(self._deliver)
            self._workers.append(job)

    @Slot(object)
    def _deliver(self, outcome: ThumbnailOutcome) -> None:
        request = outcome.request
        self._pending.discard(request.key)
        photo_ids = self._waiting_photos.pop(request.key, {request.photo_id})
        if outcome.image is None or outcome.image.isNull():
            reason = outcome.error or "could not be decoded"
            self._failures[request.content_hash] = reason
            for photo_id in photo_ids:
                self.thumbnail_failed.emit(photo_id, reason)
            return
        self._memory.put(request.key, QPixmap.fromImage(outcome.image))
        largest = self._largest_in_memory.get(request.content_hash, 0)
        self._largest_in_memory[request.content_hash] = max(largest, request.pixel_size)
        for photo_id in photo_ids:
            self.thumbnail_ready.emit(photo_id)
