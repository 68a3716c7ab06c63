"""Test Robustness: how small a change to the shown photo's pixels flips its tag.

tagger.explain.probe.probe_sensitivity takes gradient steps through the network, over the whole
photo and every crop tagging looks at, in the explainer's child process (tagger.explain.process),
which keeps the model loaded, while a worker waits for it; the probe asks whether to stop
before every step, which is also where progress is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from tagger.domain import ModelVersion, Photo, Progress
from tagger.explain.process import Explainer
from tagger.gui.explain.probe_dialog import ProbeDialog
from tagger.gui.feature_host import FeatureHost
from tagger.gui.jobs.workers import Job, JobContext, describe_error

log = logging.getLogger(__name__)

PROBE_SHORTCUT = "P"
# The probe's own default: budgets up to 32/255, enough to flip all but the surest tags.
MAX_STEPS = 10


@dataclass(frozen=True)
class ProbeFailed:
    """The photo could not be probed (unreadable, a model it cannot explain...): the message says why."""

    message: str


def _probe_work(explainer: Explainer, library_root: Path, photo: Photo, version: ModelVersion, max_steps: int):  # noqa: ANN202 - a job function
    def work(context: JobContext) -> Iterator[object]:
        def step(done: int) -> None:
            context.report(Progress(done, max_steps, "Testing robustness"))

        try:
            result = explainer.probe(library_root, photo, version, max_steps, cancelled=context.cancelled, on_step=step)
        except Exception as error:  # noqa: BLE001 - said in the probe's own window, not a second box
            log.exception("The robustness probe failed on %s", photo.path)
            yield ProbeFailed(describe_error(error))
            return
        if result is not None:  # None: cancelled
            yield result

    return work


class RobustnessProbe(QObject):
    def __init__(self, host: FeatureHost, explainer: Explainer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._explainer = explainer
        self._job: Job | None = None
        self.max_steps = MAX_STEPS
        self.dialog: ProbeDialog | None = None
        self.probe_action = QAction("Test Robustness", self)
        self.probe_action.setShortcut(QKeySequence(PROBE_SHORTCUT))
        self.probe_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.probe_action.setToolTip(
            f"Look for the smallest change to this photo's pixels that changes the model's tag ({PROBE_SHORTCUT})"
        )
        self.probe_action.triggered.connect(lambda _checked=False: self.start())
        host.preview.add_tool_action(self.probe_action)
        host.preview.photo_shown.connect(lambda _photo_id: self._enable())
        self._enable()

    def is_running(self) -> bool:
        return self._job is not None

    def start(self) -> Job | None:
        photo = self._host.preview.photo
        if photo is None or not photo.readable:
            return None
        version = self._host.library.current_model_version()
        if version is None:
            self._host.report_problem(
                "No model yet", "The robustness test probes the model: tag your photos once (Auto-tag, Ctrl+T) first."
            )
            return None
        if self._job is not None:
            self._job.cancel()  # one probe at a time: the newest photo asked about wins
        dialog = self._dialog()
        dialog.show_running(Path(photo.path).name, self.max_steps)
        job = self._host.start_job(
            "Testing robustness", _probe_work(self._explainer, self._host.library.root, photo, version, self.max_steps)
        )
        self._job = job
        job.progress.connect(lambda progress, source=job: self._progressed(source, progress))
        job.result.connect(lambda result, source=job: self._finished_probe(source, result))
        job.finished.connect(lambda cancelled, source=job: self._ended(source, cancelled))
        return job

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def _progressed(self, job: Job, progress: Progress) -> None:
        if job is self._job and self.dialog is not None:
            self.dialog.show_step(progress.done)

    def _finished_probe(self, job: Job, result: object) -> None:
        if job is not self._job or self.dialog is None or job.is_cancelled():
            return
        if isinstance(result, ProbeFailed):
            self.dialog.show_failure(result.message)
        else:
            self.dialog.show_result(result)

    def _ended(self, job: Job, cancelled: bool) -> None:
        if job is not self._job:
            return
        self._job = None
        if cancelled and self.dialog is not None:
            self.dialog.show_cancelled()

    def _dialog(self) -> ProbeDialog:
        if self.dialog is None:
            self.dialog = ProbeDialog(self._host.widget())
            self.dialog.cancel_requested.connect(self.cancel)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _enable(self) -> None:
        photo = self._host.preview.photo
        self.probe_action.setEnabled(photo is not None and photo.readable)
