"""Decodes the photo for the preview off the GUI thread, latest request only.

Holding an arrow key walks through dozens of photos a second: only the photo
the user stops on is worth decoding, so at most one decode runs and only the
newest request waits behind it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from tagger.gui.jobs.workers import Job, JobContext, JobRunner


@dataclass(frozen=True)
class PreviewRequest:
    photo_id: int
    path: str
    max_side: int | None  # None: full resolution, for 100%


@dataclass(frozen=True)
class LoadedPreview:
    request: PreviewRequest
    image: QImage | None
    error: str | None = None


def _decode(request: PreviewRequest):
    def work(context: JobContext) -> Iterator[LoadedPreview]:
        if context.cancelled():
            return
        from tagger.images.loader import load_rgb  # Pillow loads on first use, not at start-up

        try:
            picture = load_rgb(request.path, max_side=request.max_side)
        except Exception as error:  # noqa: BLE001 - any failure becomes a note in the preview
            yield LoadedPreview(request, None, str(error) or type(error).__name__)
            return
        width, height = picture.size
        data = picture.tobytes("raw", "RGB")
        yield LoadedPreview(request, QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy())

    return work


class PreviewLoader(QObject):
    loaded = Signal(object)  # LoadedPreview for the latest request only

    def __init__(self, jobs: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._running: Job | None = None
        self._waiting: PreviewRequest | None = None
        self._latest: PreviewRequest | None = None

    def request(self, photo_id: int, path: str, max_side: int | None) -> None:
        self._latest = PreviewRequest(photo_id, path, max_side)
        if self._running is not None:
            self._running.cancel()
            self._waiting = self._latest
            return
        self._start(self._latest)

    def forget(self) -> None:
        """Nothing to show any more: drop what is waiting and ignore what is running."""
        self._latest = None
        self._waiting = None
        if self._running is not None:
            self._running.cancel()

    def _start(self, request: PreviewRequest) -> None:
        job = self._jobs.start("preview", _decode(request))
        job.result.connect(self._deliver)
        job.finished.connect(self._job_finished)
        self._running = job

    @Slot(object)
    def _deliver(self, outcome: LoadedPreview) -> None:
        if outcome.request == self._latest:
            self.loaded.emit(outcome)

    @Slot(bool)
    def _job_finished(self, _cancelled: bool) -> None:
        self._running = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting == self._latest:
            self._start(waiting)
