"""An import in the background: a worker scans, the GUI thread writes each batch as it comes.

The scan (walking folders, hashing, reading headers) runs in a job; every batch
it yields is recorded by the GUI thread through the library, so photos show up
in the grid while the import is still going, and a cancelled or interrupted
import keeps every batch already found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from tagger.domain import ImportSummary, ScannedFile
from tagger.gui.jobs.workers import Job, JobContext, JobRunner, describe_error
from tagger.library.library import Library
from tagger.library.near_duplicates import HashIndex


@dataclass(frozen=True)
class PerceptualHashes:
    """The library's perceptual hashes, indexed by the worker, for the writer to compare new
    photos with (Library.use_perceptual_hashes): taken at `version`."""

    index: HashIndex
    version: int


@dataclass(frozen=True)
class ScanProblems:
    """Files the scan could not keep a row for, with the reason (reported between batches)."""

    problems: tuple[tuple[str, str], ...]


# Writing 64 scanned files took the GUI thread 20-40 ms on the 2-core development machine
# (three statements per file); 16 keep each write well inside a frame.
GUI_WRITE_CHUNK = 16


def _scan_work(paths: Sequence[str], library_root: Path, hashes_version: int | None):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[list[ScannedFile] | ScanProblems | PerceptualHashes]:
        from tagger.library.importer import scan  # hashing and image probing load with the first import

        problems: list[tuple[str, str]] = []
        # What the library knows (the files, the perceptual hashes) is read here, through a reader
        # of the worker's own: reading it all at the start of an import held the GUI thread.
        with Library(library_root, readonly=True) as reader:
            if hashes_version is not None:
                yield PerceptualHashes(reader.read_perceptual_hashes(), hashes_version)
            batches = scan(
                paths,
                reader.known_files,
                progress=context.report,
                should_cancel=context.cancelled,
                on_error=lambda path, reason: problems.append((path, reason)),
                exclude=[library_root],
            )
            for batch in batches:
                if problems:
                    yield ScanProblems(tuple(problems))
                    problems.clear()
                # Smaller pieces for the GUI thread to write: one piece costs it a few milliseconds
                # and the event loop gets a turn between pieces (see workers.Job's delivery budget).
                for start in range(0, len(batch), GUI_WRITE_CHUNK):
                    yield batch[start : start + GUI_WRITE_CHUNK]
        if problems:
            yield ScanProblems(tuple(problems))

    return work


class ImportSession(QObject):
    """One import from start to summary. The window shows its progress and its summary."""

    photos_added = Signal(list)  # ids of photos new to the library, batch by batch
    finished = Signal(object)  # ImportSummary, also when cancelled
    failed = Signal(str)  # the import stopped early; the message says why

    def __init__(
        self, library: Library, jobs: JobRunner, paths: Sequence[str | os.PathLike], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        from tagger.library.importer import ImportRecorder

        self._library = library
        self._jobs = jobs
        self._paths = [os.fspath(path) for path in paths]
        self._recorder = ImportRecorder(library, self._paths)
        self._write_failed = False
        self.job: Job | None = None

    @property
    def paths(self) -> list[str]:
        """The files and folders this import was asked to search."""
        return list(self._paths)

    @property
    def summary(self) -> ImportSummary:
        return self._recorder.summary

    def start(self) -> Job:
        work = _scan_work(self._paths, self._library.root, self._library.perceptual_hashes_version())
        self.job = self._jobs.start("Importing photos", work)
        self.job.result.connect(self._record)
        self.job.error.connect(self._scan_failed)
        self.job.finished.connect(self._finish)
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    @Slot(object)
    def _record(self, item: object) -> None:
        if self._write_failed:
            return
        if isinstance(item, PerceptualHashes):
            self._library.use_perceptual_hashes(item.index, item.version)
            return
        if isinstance(item, ScanProblems):
            for path, reason in item.problems:
                self._recorder.note_problem(path, reason)
            return
        try:
            new_ids = self._recorder.record(item)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - e.g. a full disk: stop and say so
            self._write_failed = True
            self.cancel()
            self.failed.emit(f"Could not save the imported photos: {describe_error(error)}")
            return
        if new_ids:
            self.photos_added.emit(new_ids)

    @Slot(str)
    def _scan_failed(self, message: str) -> None:
        self.failed.emit(f"The import stopped: {message}")

    @Slot(bool)
    def _finish(self, cancelled: bool) -> None:
        try:
            summary = self._recorder.finish(cancelled=cancelled or self._write_failed)
        except Exception as error:  # noqa: BLE001 - the photos are in; only missing-file marks failed
            summary = self._recorder.summary
            self.failed.emit(f"Could not check for missing photos: {describe_error(error)}")
        self.finished.emit(summary)
