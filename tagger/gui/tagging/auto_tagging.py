"""Auto-tag: the model labels photos in the background while the grid fills in.

The plan is read on the GUI thread (runner.plan_tagging), the network runs in a
job (runner.run_tagging), and each event comes back here to be written by the
library's one writer: the ModelReady first (runner.adopt_model), then batch after
batch (Library.record_tag_results). A cancelled or interrupted run keeps every
batch it delivered; the next run picks up the photos still untagged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence

from tagger.domain import ModelVersion, TagResult
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext, describe_error
from tagger.gui.tagging.engine_warmup import EngineWarmup
from tagger.gui.tagging.summary import TaggingRunSummary
from tagger.gui.widgets.action_icons import play_icon, repeat_icon
from tagger.gui.widgets.messages import show_problem
from tagger.inference.networks import network_for_option
from tagger.tagging.runner import ModelReady, TaggingPlan, adopt_model, plan_tagging, run_tagging

log = logging.getLogger(__name__)

TAG_SHORTCUT = "Ctrl+T"
RETAG_SHORTCUT = "Ctrl+Shift+T"
# More reasons than this in the details box is a list nobody reads.
_MAX_LISTED_UNREADABLE = 200


def _tagging_work(plan: TaggingPlan):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[ModelReady | list[TagResult]]:
        yield from run_tagging(plan, progress=context.report, should_cancel=context.cancelled)

    return work


def device_for_run(preference: str) -> str | None:
    """The settings say "auto"; the engine wants None for "pick the fastest"."""
    return None if preference == "auto" else preference


def network_of_first_model(choice: str) -> str | None:
    """The network a Settings choice names ("lite1"); None for "auto" (the machine's default)."""
    return None if choice == "auto" else network_for_option(choice).name


class _Run:
    """The state of the run in progress, all of it on the GUI thread."""

    def __init__(self, plan: TaggingPlan, job: Job) -> None:
        self.plan = plan
        self.job = job
        self.paths = dict(plan.items)
        self.version: ModelVersion | None = None
        self.summary = TaggingRunSummary(planned=len(plan.items) - len(plan.labeled), labeled_planned=len(plan.labeled))
        self.started = time.monotonic()
        self.write_failed = False
        self.worker_failed = False


class AutoTagger(QObject):
    """The Auto-tag and Re-tag All actions and the run they start.

    Hooks for later features: `batch_recorded` (ids written, e.g. to refresh a review
    queue), `model_adopted` (a new model version became current), `run_finished`, and `idle`
    (nothing running or waiting to run any more)."""

    batch_recorded = Signal(list)  # photo ids whose tags were just written
    model_adopted = Signal(object)  # ModelVersion the run tags with
    run_started = Signal(object)  # Job
    run_finished = Signal(object)  # TaggingRunSummary
    idle = Signal()

    def __init__(self, host: FeatureHost, warmup: EngineWarmup | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._warmup = warmup
        self._run: _Run | None = None
        self._deferred: tuple[bool, tuple[int, ...] | None, str | None] | None = None
        self.last_summary: TaggingRunSummary | None = None

        self.tag_action = QAction("Auto-&tag", self)
        self.tag_action.setShortcut(QKeySequence(TAG_SHORTCUT))
        self.tag_action.setToolTip(f"Let the model tag every photo without a label ({TAG_SHORTCUT})")
        self.tag_action.triggered.connect(lambda _checked=False: self.start())
        self.retag_action = QAction("&Re-tag All", self)
        self.retag_action.setShortcut(QKeySequence(RETAG_SHORTCUT))
        self.retag_action.setToolTip(f"Tag every photo again, except those you labeled yourself ({RETAG_SHORTCUT})")
        self.retag_action.triggered.connect(lambda _checked=False: self.start(include_tagged=True))
        self.tag_action.setIcon(play_icon())
        self.retag_action.setIcon(repeat_icon())
        for action in (self.tag_action, self.retag_action):
            # The window's, not the grid's: Ctrl+T must work from the search box and the preview too.
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            host.add_model_action(action)
        if warmup is not None:
            warmup.finished.connect(self._start_deferred)

    # -- public ------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._run is not None

    def is_busy(self) -> bool:
        """Running, or waiting for the model to be prepared to start."""
        return self._run is not None or self._deferred is not None

    def current_job(self) -> Job | None:
        return self._run.job if self._run is not None else None

    def start(
        self, *, include_tagged: bool = False, photo_ids: Sequence[int] | None = None, network: str | None = None
    ) -> Job | None:
        """Tag untagged photos (all but the user's with `include_tagged`), and compute the features
        of the photos the user labeled that have none (runner.plan_tagging); None when nothing
        started. `network` switches the library to that network; a first model runs the one
        chosen in Settings."""
        if self._run is not None:
            self._host.show_status("Auto-tag is already running", 4000)
            return None
        wanted = tuple(photo_ids) if photo_ids is not None else None
        if self._warmup is not None and self._warmup.is_pending():
            self._deferred = (include_tagged, wanted, network)
            self._host.show_status("Auto-tag starts as soon as the model is ready…", 0)
            return None
        library = self._host.library
        try:
            if network is None and library.current_model_version() is None:
                network = network_of_first_model(self._host.settings.network)
            plan = plan_tagging(
                library,
                include_tagged=include_tagged,
                photo_ids=wanted,
                device=device_for_run(self._host.settings.device),
                network=network,
            )
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: say so
            self._host.report_problem("Cannot auto-tag", describe_error(error))
            return None
        if not plan.items:
            self._host.show_status(
                "Nothing to tag: every photo has a label. Re-tag All "
                f"({RETAG_SHORTCUT}) tags the model's guesses again."
            )
            return None
        job = self._host.start_job("Auto-tagging", _tagging_work(plan))
        self._host.show_status(f"Auto-tagging {len(plan.items)} photos…", 5000)
        self._run = _Run(plan, job)
        job.result.connect(self._record)
        job.error.connect(self._worker_failed)
        job.finished.connect(self._finished)
        self._set_actions_enabled(False)
        self.run_started.emit(job)
        return job

    def switch_network(self, network: str) -> Job | None:
        """Tag every photo again with the stock `network`, the library's model starting over on it
        (runner.plan_tagging). Its export is prepared first, in the warm-up's child process:
        exporting in the run would import torch into the app."""
        if self._warmup is not None and not self.is_busy():
            self._warmup.start_now(self._host.settings.device, network)
        return self.start(include_tagged=True, network=network)

    def cancel(self) -> None:
        deferred, self._deferred = self._deferred, None
        if self._run is not None:
            self._run.job.cancel()
        elif deferred is not None:
            self.idle.emit()

    # -- results (GUI thread) ------------------------------------------------------

    def _record(self, event: object) -> None:
        run = self._run
        if run is None or run.write_failed:
            return
        try:
            if isinstance(event, ModelReady):
                run.version = adopt_model(self._host.library, event, run.plan.current)
                run.summary.engine = event.engine_description
                run.summary.model_note = event.note if event.network_changed else ""
                run.summary.model_version = run.version.id
                self._host.set_device_text(event.engine_description)
                self.model_adopted.emit(run.version)
                return
            if run.version is None:
                raise RuntimeError("the model sent results before saying which model it is")
            batch: list[TagResult] = event  # type: ignore[assignment]
            self._host.library.record_tag_results(run.version, batch)
        except Exception as error:  # noqa: BLE001 - a locked or full disk: stop and say why
            log.exception("Could not save tagging results")
            run.write_failed = True
            run.job.cancel()
            self._host.report_problem(
                "Tags not saved", f"Auto-tag stopped: the results could not be saved: {describe_error(error)}"
            )
            return
        run.summary.count(batch, run.paths, run.plan.labeled)
        ids = [result.photo_id for result in batch]
        self._host.refresh_photos(ids)
        self.batch_recorded.emit(ids)

    def _worker_failed(self, _message: str) -> None:
        # The message itself reaches the user through start_job; this only labels the summary.
        if self._run is not None:
            self._run.worker_failed = True

    def _finished(self, cancelled: bool) -> None:
        run = self._run
        if run is None:
            return
        self._run = None
        self._set_actions_enabled(True)
        summary = run.summary
        summary.seconds = time.monotonic() - run.started
        summary.failed = run.write_failed or run.worker_failed
        summary.cancelled = cancelled and not summary.failed
        self.last_summary = summary
        if not self._host.is_closing():
            self._host.show_status(summary.describe(), 15000)
            if summary.unreadable:
                self._show_unreadable(summary)
        self.run_finished.emit(summary)
        if not self.is_busy():
            self.idle.emit()

    def _show_unreadable(self, summary: TaggingRunSummary) -> None:
        count = len(summary.unreadable)
        listed = summary.unreadable[:_MAX_LISTED_UNREADABLE]
        details = "\n".join(f"{path}: {reason}" for path, reason in listed)
        if count > len(listed):
            details += f"\n… and {count - len(listed)} more"
        box = show_problem(
            self._host.widget(),
            "Some photos could not be read",
            f"{count} photo{'s' if count != 1 else ''} could not be read and "
            f"{'are' if count != 1 else 'is'} now marked Unreadable. Choose Show ▸ Unreadable "
            "to see them; fix or replace the files and add them again.",
            details,
        )
        box.setObjectName("unreadable_after_tagging")

    def _start_deferred(self) -> None:
        if self._deferred is None:
            return
        include_tagged, photo_ids, network = self._deferred
        self._deferred = None
        if (
            self._host.is_closing()
            or self.start(include_tagged=include_tagged, photo_ids=photo_ids, network=network) is None
        ):
            self.idle.emit()

    def _set_actions_enabled(self, enabled: bool) -> None:
        self.tag_action.setEnabled(enabled)
        self.retag_action.setEnabled(enabled)
