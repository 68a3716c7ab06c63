"""After another model version became current (retrained, rolled back): tag the library with it.

A version on the same backbone as the photos' cached features only needs its head run
again: a matrix product, but over 10,000 photos it takes about a second (measured: 1.07 s
for `runner.retag_from_cache` on 10k photos, 0.5 s of it reading and scoring features), far
too long for the GUI thread. So a worker scores chunks from a read-only connection and
the GUI thread writes each chunk as it arrives (about 10 ms per 500 photos) and repaints
those tiles. Photos without cached features for the version's backbone, and every photo
after a deep training (a new backbone), go through Auto-tag, which decodes them.

An Auto-tag run still tagging with the old version is stopped first: its later batches
would otherwise overwrite the new tags with the old model's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from tagger.classifier.head import Head
from tagger.domain import ModelVersion, Progress, TagResult
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.tagging.auto_tagging import AutoTagger
from tagger.gui.tagging.summary import TaggingRunSummary
from tagger.library.library import Library
from tagger.tagging.retagging import retag_from_features
from tagger.tagging.runner import sync_model_classes

log = logging.getLogger(__name__)

# Photos scored per chunk: the GUI thread writes one chunk in about 10-20 ms.
RETAG_CHUNK = 500


@dataclass(frozen=True)
class _Rescored:
    results: list[TagResult]
    without_features: list[int]  # photo ids that need decoding: no cached features for this backbone


def _rescoring_work(library_root: Path, head_file: Path, version: ModelVersion):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[_Rescored]:
        with Library(library_root, readonly=True) as reader:
            head = Head.load(head_file)
            ids = reader.photo_ids_readable()
            context.report(Progress(0, len(ids)))
            for start in range(0, len(ids), RETAG_CHUNK):
                if context.cancelled():
                    return
                chunk = ids[start : start + RETAG_CHUNK]
                results = retag_from_features(reader, head, chunk, backbone_id=version.backbone_id)
                scored = {result.photo_id for result in results}
                yield _Rescored(results, [i for i in chunk if i not in scored])
                context.report(Progress(min(start + RETAG_CHUNK, len(ids)), len(ids)))

    return work


class ModelSwitcher(QObject):
    """Re-tags the library after the current model version changed; one re-tag at a time."""

    switched = Signal(object)  # ModelVersion: the one now current (its tags may still be coming)
    # Also when Auto-tag adopts a version (first run, classes changed): for views of the current model.
    current_changed = Signal(object)  # ModelVersion
    retag_finished = Signal(int)  # photos re-tagged (from cached features, or by the Auto-tag run it started)

    def __init__(self, host: FeatureHost, auto_tagger: AutoTagger, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._auto_tagger = auto_tagger
        self._job: Job | None = None
        self._version: ModelVersion | None = None
        self._retagged = 0
        self._to_decode: list[int] = []
        self._after_auto_tag: Callable[[], None] | None = None
        self._auto_tag_is_mine = False  # the running Auto-tag is this switcher's re-tag
        auto_tagger.run_finished.connect(self._auto_tag_ended)
        auto_tagger.model_adopted.connect(self.current_changed)
        self.switched.connect(self.current_changed)

    def is_retagging(self) -> bool:
        return self._job is not None or self._auto_tag_is_mine

    def adopt(self, version: ModelVersion, *, needs_feature_extraction: bool = False) -> None:
        """`version` was just made current: tag every photo the user did not label with it."""
        version = self._with_current_classes(version)
        self._retagged = 0
        self.switched.emit(version)
        self._host.show_status(f"Model v{version.id} is now current; re-tagging…", 5000)
        if self._job is not None:
            self._job.cancel()  # its results are for a version no longer current
            self._job = None
        if needs_feature_extraction:
            self._when_auto_tag_idle(lambda: self._auto_tag(None))
        else:
            self._when_auto_tag_idle(lambda: self._rescore(version))

    # -- re-scoring from cached features ------------------------------------------------

    def _rescore(self, version: ModelVersion) -> None:
        library = self._host.library
        current = library.current_model_version()
        if current is None or current.id != version.id:
            return  # another switch came in between; it re-tags for itself
        self._version = version
        self._retagged = 0
        self._to_decode = []
        job = self._host.start_job(
            f"Re-tagging with model v{version.id}",
            _rescoring_work(library.root, library.model_file(version.head_file), version),
        )
        self._job = job
        job.result.connect(lambda event, source=job: self._record(source, event))
        job.finished.connect(lambda cancelled, source=job: self._rescored(source, cancelled))

    def _record(self, job: Job, event: _Rescored) -> None:
        if job is not self._job or self._version is None:
            return
        try:
            self._host.library.record_tag_results(self._version, event.results)
        except Exception as error:  # noqa: BLE001 - a locked or full disk: stop and say why
            log.exception("Could not save the new tags")
            job.cancel()
            self._job = None
            self._host.report_problem("Tags not saved", f"Re-tagging stopped: {describe_error(error)}")
            return
        self._retagged += len(event.results)
        self._to_decode.extend(event.without_features)
        self._host.refresh_photos([result.photo_id for result in event.results])

    def _rescored(self, job: Job, cancelled: bool) -> None:
        if job is not self._job:
            return
        self._job = None
        if cancelled or self._host.is_closing():
            return
        version = self._version
        self._host.show_status(f"{self._retagged} photos re-tagged with model v{version.id}", 10000)
        if self._to_decode:
            # Never tagged with this backbone (e.g. imported after a deep training): decode them.
            self._auto_tag(self._to_decode)
            return
        self.retag_finished.emit(self._retagged)

    # -- helpers ------------------------------------------------------------------------------

    def _with_current_classes(self, version: ModelVersion) -> ModelVersion:
        """Classes added or renamed while the model trained: the version gets them too."""
        if tuple(version.classes) == tuple(self._host.library.class_names()):
            return version
        try:
            return sync_model_classes(self._host.library) or version
        except Exception as error:  # noqa: BLE001 - keep the version as it is and say why
            log.exception("Could not bring the model's classes up to date")
            self._host.report_problem("Classes not updated", describe_error(error))
            return version

    def _auto_tag(self, photo_ids: list[int] | None) -> None:
        """Tag by decoding the photos (all the model may tag, or these): a new backbone has no features yet."""
        self._auto_tag_is_mine = self._auto_tagger.start(include_tagged=True, photo_ids=photo_ids) is not None
        if not self._auto_tag_is_mine:
            self.retag_finished.emit(self._retagged)

    def _when_auto_tag_idle(self, then: Callable[[], None]) -> None:
        if not self._auto_tagger.is_running():
            then()
            return
        self._after_auto_tag = then
        self._auto_tagger.cancel()

    def _auto_tag_ended(self, summary: TaggingRunSummary) -> None:
        if self._auto_tag_is_mine:
            self._auto_tag_is_mine = False
            self.retag_finished.emit(self._retagged + summary.tagged)
        then, self._after_auto_tag = self._after_auto_tag, None
        if then is not None and not self._host.is_closing():
            then()
