"""A progress bar with a Cancel button, for the background job the user started."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

from tagger.domain import Progress
from tagger.gui.jobs.workers import Job
from tagger.gui.widgets.elided_label import ElidedLabel

_CAPTION_MAX_WIDTH = 360


class JobProgress(QWidget):
    """Shows the job the user started last; when it ends, the one before it if that still runs.

    Hidden while none runs. Each job's latest progress is kept, so going back to an
    earlier job (tagging, after a quick export) shows where it is at once."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._followed: list[Job] = []  # oldest first; the last is shown
        self._latest: dict[int, Progress] = {}  # id(job) -> its last report
        # A job's message can be long (a file name, a class list): shortened, it never widens the window.
        self.caption = ElidedLabel(mode=Qt.TextElideMode.ElideRight)
        self.caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.caption.setMaximumWidth(_CAPTION_MAX_WIDTH)
        self.bar = QProgressBar()
        self.bar.setMinimumWidth(150)  # "1234 / 5678" must fit
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.speed_label = QLabel()  # rate and time left, when the job knows them
        self.speed_label.setObjectName("job_speed")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        # Never wider than it needs: the status bar hands out spare room while it shows a message.
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.bar)
        layout.addWidget(self.speed_label)
        layout.addWidget(self.cancel_button)
        self.hide()

    def follow(self, job: Job) -> None:
        self._followed.append(job)
        job.progress.connect(lambda progress, reporter=job: self._progressed(reporter, progress))
        job.finished.connect(lambda _cancelled, ended=job: self._job_ended(ended))
        self._show(job)

    def current_job(self) -> Job | None:
        return self._followed[-1] if self._followed else None

    def _show(self, job: Job) -> None:
        self.caption.setText(job.title + "…")
        self.bar.setRange(0, 0)  # busy until the job says how much there is to do
        self.speed_label.clear()
        stopping = job.is_cancelled()
        self.cancel_button.setEnabled(not stopping)
        self.cancel_button.setText("Stopping…" if stopping else "Cancel")
        latest = self._latest.get(id(job))
        if latest is not None:
            self._show_progress(latest)
        self.show()

    def _progressed(self, job: Job, progress: Progress) -> None:
        if job not in self._followed:
            return
        self._latest[id(job)] = progress
        if job is self.current_job():
            self._show_progress(progress)

    def _show_progress(self, progress: Progress) -> None:
        if progress.total:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(min(progress.done, progress.total))
            self.bar.setFormat("%v / %m")
            self.speed_label.setText(describe_speed(progress))
        else:
            self.bar.setRange(0, 0)
        if progress.message:
            self.caption.setText(progress.message)

    def _cancel(self) -> None:
        job = self.current_job()
        if job is not None:
            job.cancel()
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Stopping…")

    def _job_ended(self, job: Job) -> None:
        if job not in self._followed:
            return
        self._followed.remove(job)
        self._latest.pop(id(job), None)
        if self._followed:
            self._show(self._followed[-1])
        else:
            self.hide()


def describe_speed(progress: Progress) -> str:
    """ "7.1/s · 56 s left", or the part of it that is known yet."""
    parts = []
    if progress.rate_per_s:
        parts.append(f"{progress.rate_per_s:.1f}/s")
    eta = progress.eta_s
    if eta is not None and eta > 1:
        parts.append(f"{describe_duration(eta)} left")
    return " · ".join(parts)


def describe_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
