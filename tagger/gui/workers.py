"""Background jobs: a generator runs in its own QThread and reports by signals.

A job is any function `work(context) -> Iterator[object]`. Each value it yields
reaches the GUI thread as `Job.result`; it may report `Progress` through
`context.report(...)`; `context.cancelled()` tells long steps to stop early,
and the runner also stops the generator between two yields once cancelled.

The worker thread never touches what the user sees or the library's writer:
results travel to the GUI thread, which decides what to show and write.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, Signal, Slot

from tagger.domain import Progress

log = logging.getLogger(__name__)


class JobContext:
    """What a running job may ask of its runner: whether to stop, and where to report."""

    def __init__(self, report: Callable[[Progress], None]) -> None:
        self._cancel = threading.Event()
        self._report = report

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, progress: Progress) -> None:
        self._report(progress)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancel; True when cancelled."""
        return self._cancel.wait(seconds)

    def cancel(self) -> None:
        self._cancel.set()


JobWork = Callable[[JobContext], Iterator[object]]


class _GeneratorThread(QThread):
    """Runs the generator in `run()` itself: no event loop in the worker, so the
    thread ends the moment the generator does, and waiting for it cannot deadlock
    on a quit() that the busy GUI thread has not delivered yet."""

    produced = Signal(object)
    progressed = Signal(object)
    failed = Signal(str)
    done = Signal(bool)

    def __init__(self, work: JobWork) -> None:
        super().__init__()
        self._work = work
        self.context = JobContext(self.progressed.emit)

    def run(self) -> None:
        generator = None
        try:
            generator = self._work(self.context)
            for value in generator:
                self.produced.emit(value)
                if self.context.cancelled():
                    break
        except Exception as error:  # noqa: BLE001 - a job's failure must reach the user, not kill the thread
            log.error("Background job failed:\n%s", traceback.format_exc())
            self.failed.emit(describe_error(error))
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()
                except Exception:  # noqa: BLE001 - a failing clean-up must not hide the real outcome
                    log.exception("Background job failed while stopping")
            self.done.emit(self.context.cancelled())


class Job(QObject):
    """One background job as the GUI thread sees it.

    Its signals are emitted in the GUI thread, so any slot connected to them
    (a lambda included) may safely change widgets and write to the library."""

    progress = Signal(object)  # Progress
    result = Signal(object)  # whatever the generator yielded
    error = Signal(str)  # a message meant for the user
    finished = Signal(bool)  # True when it stopped because it was cancelled

    def __init__(self, title: str, work: JobWork, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self._thread = _GeneratorThread(work)
        self._thread.setObjectName(f"job: {title}")
        self._running = False
        self._ended = False
        # Connected to this object's own methods: it lives in the GUI thread, so
        # Qt queues each call there instead of running it on the worker thread.
        self._thread.produced.connect(self._relay_result)
        self._thread.progressed.connect(self._relay_progress)
        self._thread.failed.connect(self._relay_error)
        self._thread.done.connect(self._relay_finished)

    # -- control -------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def cancel(self) -> None:
        self._thread.context.cancel()

    def is_cancelled(self) -> bool:
        return self._thread.context.cancelled()

    def is_running(self) -> bool:
        return self._running

    def wait(self, timeout_ms: int) -> bool:
        """Block until the thread has ended (results may still wait in the event queue)."""
        return self._thread.wait(timeout_ms)

    # -- relays (GUI thread) --------------------------------------------------

    @Slot(object)
    def _relay_result(self, value: object) -> None:
        self.result.emit(value)

    @Slot(object)
    def _relay_progress(self, progress: object) -> None:
        if not self._ended:
            self.progress.emit(progress)

    @Slot(str)
    def _relay_error(self, message: str) -> None:
        self.error.emit(message)

    @Slot(bool)
    def _relay_finished(self, cancelled: bool) -> None:
        self._thread.wait()
        self._running = False
        self._ended = True
        self.finished.emit(cancelled)


class JobRunner(QObject):
    """Starts jobs and keeps them alive until they end; stops them all on shutdown."""

    job_started = Signal(object)  # Job
    job_ended = Signal(object)  # Job

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []

    def start(self, title: str, work: JobWork) -> Job:
        """Create and start a job; connect to its signals before the event loop runs again."""
        job = Job(title, work, self)
        self._jobs.append(job)
        job.finished.connect(lambda _cancelled, ended=job: self._forget(ended))
        # Safe to start before the caller connects: results are queued to this
        # thread and cannot be delivered until the caller returns to the event loop.
        job.start()
        self.job_started.emit(job)
        return job

    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel every job, wait for their threads, then deliver what they already produced.

        Results queued before the cancel still reach their slots, so an import
        interrupted by closing the window writes every batch it had found."""
        self.cancel_all()
        all_stopped = True
        for job in list(self._jobs):
            if not job.wait(timeout_ms):
                log.error("Background job %r did not stop in time", job.title)
                all_stopped = False
        QCoreApplication.sendPostedEvents(None, QEvent.Type.MetaCall)
        return all_stopped

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self.job_ended.emit(job)
        # Handed back to Python rather than deleteLater(): a caller may still hold
        # the job and ask whether it is running, which must not hit a deleted object.
        job.setParent(None)


def describe_error(error: BaseException) -> str:
    """A one-line message for the user: the error's own words, not a traceback."""
    text = str(error).strip()
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return text or type(error).__name__
