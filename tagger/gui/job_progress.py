"""A progress bar with a Cancel button, for the background job the user started."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from tagger.domain import Progress
from tagger.gui.workers import Job


class JobProgress(QWidget):
    """Follows one job at a time; hidden while none runs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._job: Job | None = None
        self.caption = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.hide()

    def follow(self, job: Job) -> None:
        self._job = job
        self.caption.setText(job.title + "…")
        self.bar.setRange(0, 0)  # busy until the job says how much there is to do
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")
        job.progress.connect(self._show_progress)
        job.finished.connect(lambda _cancelled, ended=job: self._job_ended(ended))
        self.show()

    def current_job(self) -> Job | None:
        return self._job

    def _show_progress(self, progress: Progress) -> None:
        if progress.total:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(min(progress.done, progress.total))
            eta = progress.eta_s
            self.bar.setFormat("%v / %m" + (f"  ({_duration(eta)} left)" if eta and eta > 2 else ""))
        else:
            self.bar.setRange(0, 0)
        if progress.message:
            self.caption.setText(progress.message)

    def _cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.cancel_button.setEnabled(False)
            self.cancel_button.setText("Stopping…")

    def _job_ended(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self.hide()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
