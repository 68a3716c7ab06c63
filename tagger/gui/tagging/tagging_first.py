"""Model work that needs the model's view of photos tags what is missing first.

Retrain and Likely-Wrong Labels learn from the cached features of the photos the user
labeled (LABEL_FEATURES), and the review queue ranks the current model's tags (TAGS). Photos
labeled before any tagging have no features (import-labels, or labeling right after an
import), and before the first tagging there is no model at all. So instead of asking the user
to Auto-tag first, such work asks `TaggingFirst`, which starts the Auto-tag run that computes
what is missing (the one tagging run: runner.plan_tagging covers labeled photos without
features, and their labels stay the user's), and goes on once that run's results are written.
Before any model, that run also makes the first (zero-shot) version, as a first Auto-tag does.

The run shows in the status bar with its progress and Cancel; cancelling it, or a run that
fails, stops the work that waited for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, describe_error
from tagger.gui.tagging.auto_tagging import AutoTagger
from tagger.gui.tagging.summary import TaggingRunSummary
from tagger.tagging.runner import labeled_photos_without_features

LABEL_FEATURES = "features of the labeled photos"
TAGS = "a tag for every photo the model may tag"


@dataclass(frozen=True)
class _Request:
    proceed: Callable[[], None]  # what the work needs is there: go on
    stopped: Callable[[], None]  # the run was cancelled or failed: give up
    needs: str  # LABEL_FEATURES or TAGS


class TaggingFirst(QObject):
    """Runs Auto-tag for what waiting work needs, then lets that work go on; GUI thread only."""

    tagging_started = Signal(object)  # the Job of a run started for waiting work

    def __init__(self, host: FeatureHost, auto_tagger: AutoTagger, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._auto_tagger = auto_tagger
        self._waiting: list[_Request] = []
        self._asked = False  # a run was asked for the waiting work (it may wait for the model to be prepared)
        self._job: Job | None = None  # that run, once started
        auto_tagger.run_started.connect(self._run_started)
        auto_tagger.run_finished.connect(self._run_finished)
        auto_tagger.idle.connect(self._idle)

    def request(self, proceed: Callable[[], None], stopped: Callable[[], None], *, needs: str) -> None:
        """Call `proceed` once what the work `needs` is there (LABEL_FEATURES: the labeled photos
        have features for the current model; TAGS: every photo the model may tag has a tag); at
        once when nothing is missing. `stopped` instead if the run is cancelled or fails. Asking
        again while waiting changes nothing."""
        if any(request.proceed == proceed for request in self._waiting):
            return
        self._waiting.append(_Request(proceed, stopped, needs))
        self._next()

    def withdraw(self, proceed: Callable[[], None]) -> None:
        """The work that asked with `proceed` no longer wants to go on; a run only it waited for stops."""
        self._waiting = [request for request in self._waiting if request.proceed != proceed]
        if self._waiting:
            return
        if self._job is not None:
            self._job.cancel()
        elif self._asked:
            self._auto_tagger.cancel()  # still waiting for the model to be prepared

    # -- the run (GUI thread) ------------------------------------------------------------

    def _next(self) -> None:
        if not self._waiting or self._asked or self._auto_tagger.is_busy():
            return  # a run is coming or going on: its end brings us back here
        try:
            photo_ids = self._missing()
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: say so
            self._host.report_problem("Cannot read the library", describe_error(error))
            self._release(proceeding=False)
            return
        if not photo_ids:
            self._release(proceeding=True)
            return
        self._asked = True
        self._auto_tagger.start(photo_ids=photo_ids)
        if not self._auto_tagger.is_busy():  # nothing was left to do after all
            self._asked = False
            self._release(proceeding=True)

    def _missing(self) -> list[int]:
        library = self._host.library
        needs = {request.needs for request in self._waiting}
        missing = set(labeled_photos_without_features(library)) if LABEL_FEATURES in needs else set()
        if TAGS in needs:
            missing.update(library.photo_ids_to_tag(include_tagged=False))
        return sorted(missing)

    def _idle(self) -> None:
        if self._job is None:
            self._asked = False  # the run asked for never started (cancelled, or nothing left to do)
        self._next()

    def _run_started(self, job: Job) -> None:
        if self._asked:
            self._job = job
            self.tagging_started.emit(job)

    def _run_finished(self, summary: TaggingRunSummary) -> None:
        if self._job is None:
            return  # not ours: once Auto-tag is idle, `_next` looks again at what is missing
        self._job = None
        self._asked = False
        self._release(proceeding=not (summary.cancelled or summary.failed))

    def _release(self, *, proceeding: bool) -> None:
        waiting, self._waiting = self._waiting, []
        for request in waiting:
            (request.proceed if proceeding else request.stopped)()
