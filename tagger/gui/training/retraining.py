"""Retrain: the model learns from the user's labels in the background while they keep working.

Quick (Ctrl+R) fits the head to cached features in seconds; Deep (Ctrl+Shift+R) also
fine-tunes the backbone on the photos. Labeled photos without features get them first, in an
Auto-tag run (tagging/tagging_first.py), which before any model also makes the first one; the dialog
shows that step's progress and its Cancel stops it. The worker (training_job.py) trains from a
read-only snapshot of the labels; the GUI thread registers the result as a new version
(the library's one writer) and makes it current only when the user says so, with the
recommendation preselected. The ModelSwitcher then re-tags the library with it.

Labels changed during training are saved at once as always; training read its labels
when it started, so they count for the next one, and the window says how many there are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from tagger.domain import ModelVersion, Progress
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, describe_error
from tagger.gui.tagging.auto_tagging import device_for_run
from tagger.gui.tagging.tagging_first import LABEL_FEATURES, TaggingFirst
from tagger.gui.training.dialog import RetrainDialog
from tagger.gui.training.job import DEEP, QUICK, TrainingFailed, TrainingProgress, TrainingRequest, training_work
from tagger.gui.training.model_switching import ModelSwitcher
from tagger.gui.widgets.action_icons import play_icon

log = logging.getLogger(__name__)

QUICK_SHORTCUT = "Ctrl+R"
DEEP_SHORTCUT = "Ctrl+Shift+R"


@dataclass
class _Run:
    """One training, from start to the user's decision; GUI thread only."""

    job: Job
    mode: str
    current: ModelVersion
    changed_labels: set[int] = field(default_factory=set)
    outcome: object | None = None  # TrainingOutcome
    version: ModelVersion | None = None
    failed: bool = False


class RetrainFeature(QObject):
    run_started = Signal(object)  # Job
    outcome_registered = Signal(object)  # ModelVersion of the new model (current or not)
    decided = Signal(bool)  # True when the new model became current
    run_ended = Signal(bool)  # True when cancelled

    def __init__(
        self, host: FeatureHost, switcher: ModelSwitcher, tagging_first: TaggingFirst, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._switcher = switcher
        self._tagging_first = tagging_first
        self._run: _Run | None = None
        self._preparing: str | None = None  # the mode of a retrain waiting for its features
        self.dialog: RetrainDialog | None = None
        tagging_first.tagging_started.connect(self._features_started)

        self.quick_action = QAction("&Quick Retrain", self)
        self.quick_action.setShortcut(QKeySequence(QUICK_SHORTCUT))
        self.quick_action.setToolTip(f"Retrain the model on your labels in seconds ({QUICK_SHORTCUT})")
        self.quick_action.triggered.connect(lambda _checked=False: self.start(QUICK))
        self.deep_action = QAction("&Deep Retrain", self)
        self.deep_action.setShortcut(QKeySequence(DEEP_SHORTCUT))
        self.deep_action.setToolTip(
            "Also fine-tune the network on your photos: minutes, better for new "
            f"classes; every photo is tagged again afterwards ({DEEP_SHORTCUT})"
        )
        self.deep_action.triggered.connect(lambda _checked=False: self.start(DEEP))
        self.mode_menu = QMenu("Retrain")
        self.mode_menu.addActions([self.quick_action, self.deep_action])
        # A split button in the toolbar: the button retrains quickly, its arrow offers Deep.
        self.retrain_action = QAction("Re&train", self)
        self.retrain_action.setIcon(play_icon())
        self.retrain_action.setToolTip(
            f"Retrain the model on your labels ({QUICK_SHORTCUT}; Deep from the arrow, {DEEP_SHORTCUT})"
        )
        self.retrain_action.setMenu(self.mode_menu)
        self.retrain_action.triggered.connect(lambda _checked=False: self.start(QUICK))
        for action in (self.quick_action, self.deep_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        host.add_model_action(self.retrain_action)
        # The window holds the mode actions too, so their keys work wherever the focus is.
        host.widget().addActions([self.quick_action, self.deep_action])
        host.labels.labels_changed.connect(self._note_label_change)

    # -- public ------------------------------------------------------------------

    def is_running(self) -> bool:
        """Training, or computing the features it needs first."""
        return self._preparing is not None or (self._run is not None and self._run.job.is_running())

    def current_job(self) -> Job | None:
        return self._run.job if self._run is not None else None

    def start(self, mode: str = QUICK) -> bool:
        """Retrain in the background, after computing the features it needs; True when under way,
        False when not (the status bar or a message says why)."""
        if self.is_running():
            self._show_dialog(activate=True)
            self._host.show_status("A training is already running", 4000)
            return False
        try:
            n_labels = len(self._host.library.user_labels())
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: say so
            self._host.report_problem("Cannot retrain", describe_error(error))
            return False
        self._preparing = mode
        self._set_actions_enabled(False)
        self._tagging_first.request(self._features_ready, self._features_stopped, needs=LABEL_FEATURES)
        if self._preparing is not None:  # waiting for the features: say so
            dialog = self._show_dialog(activate=False)
            dialog.show_training(mode, n_labels)
            dialog.show_reading(Progress(0, 0))
        return self.is_running()

    def _features_ready(self) -> None:
        mode, self._preparing = self._preparing, None
        if mode is not None and not self._train(mode):
            self._set_actions_enabled(True)

    def _train(self, mode: str) -> bool:
        library = self._host.library
        try:
            current = library.current_model_version()
            n_labels = len(library.user_labels())
        except Exception as error:  # noqa: BLE001 - e.g. the database is locked: say so
            self._hide_dialog()
            self._host.report_problem("Cannot retrain", describe_error(error))
            return False
        if current is None:  # the features were computed, so no labeled photo could be read
            self._hide_dialog()
            self._host.report_problem(
                "Cannot retrain",
                "There are no labeled photos Tagger can read: label a few photos of each class, then retrain.",
            )
            return False
        request = TrainingRequest(
            library.root,
            library.models_dir,
            current,
            tuple(library.class_names()),
            mode,
            device_for_run(self._host.settings.device),
        )
        job = self._host.start_job(f"Retraining ({mode})", training_work(request))
        run = _Run(job, mode, current)
        self._run = run
        # Shown without taking the keyboard: the user goes on labeling in the grid while it trains.
        dialog = self._show_dialog(activate=False)
        dialog.show_training(mode, n_labels)
        dialog.show_labels_changed(0, finished=False)
        job.progress.connect(lambda progress, source=run: self._progressed(source, progress))
        job.result.connect(lambda event, source=run: self._received(source, event))
        job.finished.connect(lambda cancelled, source=run: self._ended(source, cancelled))
        self._set_actions_enabled(False)
        self.run_started.emit(job)
        return True

    def cancel(self) -> None:
        if self._preparing is not None:
            self._tagging_first.withdraw(self._features_ready)
            self._features_stopped()
        elif self._run is not None:
            self._run.job.cancel()

    # -- the features first (GUI thread) --------------------------------------------------

    def _features_started(self, job: Job) -> None:
        if self._preparing is not None:  # else the run is for other work (Likely-Wrong Labels)
            job.progress.connect(self._features_progressed)

    def _features_progressed(self, progress: object) -> None:
        if self._preparing is not None and self.dialog is not None and isinstance(progress, Progress):
            self.dialog.show_reading(progress)

    def _features_stopped(self) -> None:
        if self._preparing is None:
            return
        self._preparing = None
        self._set_actions_enabled(True)
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.show_cancelled()
        if not self._host.is_closing():
            self._host.show_status("Retraining stopped before training: the current model is unchanged", 8000)
        self.run_ended.emit(True)

    # -- the run (GUI thread) ------------------------------------------------------------

    def _progressed(self, run: _Run, progress: object) -> None:
        if run is self._run and self.dialog is not None and isinstance(progress, TrainingProgress):
            self.dialog.show_progress(progress)

    def _received(self, run: _Run, event: object) -> None:
        if run is not self._run:
            return
        if isinstance(event, TrainingFailed):
            run.failed = True
            if self.dialog is not None:
                self.dialog.hide()
            self._host.report_problem("Cannot retrain", event.message)
            return
        # Imported here, not at start-up: numpy only, but the app's first paint need not wait for it.
        from tagger.training.retraining import register_outcome

        try:
            run.version = register_outcome(self._host.library, event, make_current=False)
        except Exception as error:  # noqa: BLE001 - a full or read-only disk: the current model stays
            log.exception("Could not record the trained model")
            run.failed = True
            self._host.report_problem("New model not saved", describe_error(error))
            return
        run.outcome = event
        dialog = self._show_dialog(activate=True)
        dialog.show_result(event, run.version.id, run.current.id)
        dialog.show_labels_changed(len(run.changed_labels), finished=True)
        self.outcome_registered.emit(run.version)

    def _ended(self, run: _Run, cancelled: bool) -> None:
        if run is not self._run:
            return
        self._set_actions_enabled(True)
        if run.outcome is None:
            self._run = None
            if cancelled and not run.failed and not self._host.is_closing():
                if self.dialog is not None:
                    self.dialog.show_cancelled()
                self._host.show_status("Training cancelled: the current model is unchanged", 8000)
            elif self.dialog is not None and not run.failed:
                self.dialog.hide()  # a worker error: start_job has already said why
        self.run_ended.emit(cancelled and run.outcome is None)

    def _use_new(self) -> None:
        run = self._run
        if run is None or run.version is None:
            return
        self._run = None
        try:
            version = self._host.library.promote(run.version.id)
        except Exception as error:  # noqa: BLE001 - the current model stays; say why
            self._host.report_problem("New model not used", describe_error(error))
            return
        if self.dialog is not None:
            self.dialog.show_decided(f"Model v{version.id} is now current; your photos are being re-tagged.")
        self._switcher.adopt(version, needs_feature_extraction=bool(run.outcome.needs_feature_extraction))
        self.decided.emit(True)

    def _keep_current(self) -> None:
        run = self._run
        if run is None or run.version is None:
            return
        self._run = None
        text = f"Model v{run.current.id} stays current; the new model v{run.version.id} is kept in Model History."
        if self.dialog is not None:
            self.dialog.show_decided(text)
        self._host.show_status(text, 10000)
        self.decided.emit(False)

    def _note_label_change(self, photo_ids: list[int]) -> None:
        run = self._run
        if run is None:
            return
        run.changed_labels.update(photo_ids)
        if self.dialog is not None:
            self.dialog.show_labels_changed(len(run.changed_labels), finished=run.outcome is not None)

    # -- helpers ----------------------------------------------------------------------------

    def _show_dialog(self, *, activate: bool = True) -> RetrainDialog:
        if self.dialog is None:
            self.dialog = RetrainDialog(self._host.widget())
            self.dialog.cancel_requested.connect(self.cancel)
            self.dialog.use_new_requested.connect(self._use_new)
            self.dialog.keep_current_requested.connect(self._keep_current)
        dialog = self.dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, not activate)
        dialog.show()
        dialog.raise_()
        if activate:
            dialog.activateWindow()
        return dialog

    def _hide_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.hide()

    def _set_actions_enabled(self, enabled: bool) -> None:
        for action in (self.retrain_action, self.quick_action, self.deep_action):
            action.setEnabled(enabled)
